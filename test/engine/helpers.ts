import path from 'node:path';
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
