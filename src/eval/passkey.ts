import type { Model } from '../engine/model.js';
import { seededRandom } from '../util/random.js';
import { CacheMeter, type CacheMemory } from './memory.js';
import { bosIds, cellMetric, checkFits, encode, firstInteger, greedyAnswer, mixSeed } from './retrieval.js';

/**
 * The passkey retrieval test of landmark attention (Mohtashami & Jaggi 2023), also used by
 * StreamingLLM and the KV-compression papers: a task line, repeated filler, the key line at a given
 * depth of the filler, more filler, the question. Lengths are prompt tokens; the key is 1..50000,
 * seeded per (length, depth, trial); the answer is read greedily and is right when its first integer
 * is the key.
 */
export const PASSKEY_TASK = 'There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.';
export const PASSKEY_FILLER = 'The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.';
export const PASSKEY_QUESTION = 'What is the pass key? The pass key is';
const ANSWER_TOKENS = 10;

export function passkeyLine(key: number): string {
  return `The pass key is ${key}. Remember it. ${key} is the pass key.`;
}

export interface GridOptions {
  cache: string;
  lengths: number[];
  /** Percent of the filler before the key (0 = right after the task line, 100 = right before the question). */
  depths: number[];
  trials: number;
  seed: number;
  onProgress?: (done: number, total: number) => void;
}

export interface GridResult {
  accuracy: number;
  /** cellMetric(L, d) → accuracy over the trials of that cell. */
  cells: Record<string, number>;
  trials: number;
  memory: CacheMemory;
}

/**
 * The prompt's token ids: whole filler units fill it up to `length` tokens. `filler` is the repeated
 * unit (the task's own unless given: the recall model's training uses other fillers in this format).
 */
export function passkeyPrompt(model: Model, length: number, depth: number, key: number, fillerText = PASSKEY_FILLER): number[] {
  const head = [...bosIds(model), ...encode(model, `${PASSKEY_TASK}\n`)];
  const unit = encode(model, ` ${fillerText}`);
  const info = encode(model, `\n${passkeyLine(key)}\n`);
  const question = encode(model, `\n${PASSKEY_QUESTION}`);
  const room = length - head.length - info.length - question.length;
  const units = Math.max(0, Math.floor(room / unit.length));
  const before = Math.round((units * depth) / 100);
  const filler = (n: number): number[] => Array.from({ length: n }, () => unit).flat();
  return [...head, ...filler(before), ...info, ...filler(units - before), ...question];
}

export async function passkey(model: Model, o: GridOptions): Promise<GridResult> {
  for (const length of o.lengths) checkFits(model, length, ANSWER_TOKENS, `passkey length ${length}`);
  return runGrid(model, o, (length, depth, trial) => {
    const random = seededRandom(mixSeed(o.seed, length, depth, trial));
    const key = 1 + Math.floor(random() * 50000);
    return { prompt: passkeyPrompt(model, length, depth, key), check: (answer) => firstInteger(answer) === String(key) };
  }, ANSWER_TOKENS);
}

/** Runs every (length, depth, trial) of a grid on one session; shared with needle. */
export async function runGrid(
  model: Model,
  o: GridOptions,
  make: (length: number, depth: number, trial: number) => { prompt: number[]; check: (answer: string) => boolean },
  answerTokens: number,
): Promise<GridResult> {
  const total = o.lengths.reduce((n, l) => n + l, 0) * o.depths.length * o.trials;
  const session = model.session({ cache: o.cache });
  const cells: Record<string, number> = {};
  let right = 0;
  let done = 0;
  const meter = new CacheMeter(session);
  try {
    for (const length of o.lengths) {
      for (const depth of o.depths) {
        let cellRight = 0;
        for (let trial = 0; trial < o.trials; trial++) {
          const { prompt, check } = make(length, depth, trial);
          const answer = await greedyAnswer(session, prompt, answerTokens);
          if (check(answer)) cellRight++;
          meter.record(); // after the answer's tokens, which the cache holds too
          done += length;
          o.onProgress?.(done, total);
        }
        cells[cellMetric(length, depth)] = cellRight / o.trials;
        right += cellRight;
      }
    }
  } finally {
    session.dispose();
  }
  return {
    accuracy: right / (o.lengths.length * o.depths.length * o.trials),
    cells,
    trials: o.trials,
    memory: meter.memory(),
  };
}
