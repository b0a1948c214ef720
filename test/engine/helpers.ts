import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { loadModel, type LoadOptions, type Model } from '../../src/engine/model.js';
import { argmax } from '../../src/engine/sample.js';
import type { Session } from '../../src/engine/session.js';

export const SHARED = path.resolve('../shared');
export const REF6M_DIR = path.join(SHARED, 'models/ref-6m');
export const REF6M_GGUF = path.join(REF6M_DIR, 'ref-6m.gguf');
export const STORIES_BIN = path.join(SHARED, 'models/stories260K/stories260K.bin');
export const STORIES_GGUF = path.join(SHARED, 'models/stories260K/stories260K.gguf');
export const STORIES_F64_GREEDY = path.join(SHARED, 'models/stories260K/greedy_reference.json');

/** `n` greedy tokens after feeding `prompt` to a fresh session. */
export function greedyTokens(session: Session, prompt: readonly number[], n: number): number[] {
  let logits = session.feed(prompt);
  const got: number[] = [];
  while (got.length < n) {
    got.push(argmax(logits));
    logits = session.feed([got[got.length - 1]!]);
  }
  return got;
}

/** Loads `file` before the tests of the block it is called in, hands it to `set`, and closes it after them. */
export function withModel(file: string, set: (model: Model) => void, options: LoadOptions = { threads: 1 }): void {
  let model: Model | undefined;
  beforeAll(async () => set((model = await loadModel(file, options))));
  afterAll(async () => model?.close());
}
