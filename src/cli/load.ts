import { defaultModelPath, loadModel, type Model } from '../engine/model.js';
import { readModelHeader } from '../model/load.js';
import { planMemory, type MemoryPlan } from '../model/plan.js';
import { resolveModel } from '../hub/download.js';
import { attentionOption, intOption, matmulOption, threadsOption } from './args.js';

interface ModelValues {
  model?: string;
  tokenizer?: string;
  threads?: string;
  attention?: string;
  matmul?: string;
  /** Cache spec the memory plan checks (--cache). */
  cache?: string;
}

/** Loads --model (a path or a Hugging Face repo id; ../shared/models/ref-6m when omitted), after its memory plan for `context` tokens. */
export async function loadModelFromOptions(values: ModelValues & { context?: number }): Promise<Model> {
  const threads = threadsOption(values.threads);
  const attention = attentionOption(values.attention);
  const matmul = matmulOption(values.matmul);
  return loadModel(await modelPathFromOptions(values), { threads, matmul, tokenizer: values.tokenizer, context: values.context, cache: values.cache, attention });
}

/** The local path of --model (a Hugging Face repo id is downloaded first; ../shared/models/ref-6m when omitted). */
export async function modelPathFromOptions(values: ModelValues): Promise<string> {
  return values.model === undefined ? defaultModelPath() : resolveModel(values.model);
}

/** The memory plan of --model for --ctx tokens of --cache, from its header (no weight is read). */
export async function planFromOptions(values: ModelValues & { ctx?: string }): Promise<MemoryPlan> {
  const threads = threadsOption(values.threads);
  const header = await readModelHeader(await modelPathFromOptions(values));
  return planMemory(header, { context: intOption('ctx', values.ctx, 0, 1), cache: values.cache, threads });
}
