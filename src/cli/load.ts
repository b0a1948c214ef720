import { loadModel, type Model } from '../model.js';
import { resolveModel } from '../hub/download.js';
import { intOption } from './args.js';
import os from 'node:os';

/** Loads --model (a path or a Hugging Face repo id; ../shared/models/ref-6m when omitted). */
export async function loadModelFromOptions(values: { model?: string; tokenizer?: string; threads?: string }): Promise<Model> {
  const threads = intOption('threads', values.threads, os.availableParallelism(), 1);
  const local = values.model === undefined ? undefined : await resolveModel(values.model);
  return loadModel(local, { threads, tokenizer: values.tokenizer });
}
