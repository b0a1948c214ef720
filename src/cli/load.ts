import { loadModel, type Model } from '../model.js';
import { resolveModel } from '../hub/download.js';
import { threadsOption } from './args.js';

/** Loads --model (a path or a Hugging Face repo id; ../shared/models/ref-6m when omitted). */
export async function loadModelFromOptions(values: { model?: string; tokenizer?: string; threads?: string }): Promise<Model> {
  const threads = threadsOption(values.threads);
  const local = values.model === undefined ? undefined : await resolveModel(values.model);
  return loadModel(local, { threads, tokenizer: values.tokenizer });
}
