import { UsageError } from '../errors.js';
import type { Model } from '../engine/model.js';
import { seededRandom } from '../util/random.js';
import { haystackIds, sentenceBoundary } from './needle.js';
import { runGrid, type GridOptions, type GridResult } from './passkey.js';
import { bosIds, checkFits, encode, mixSeed } from './retrieval.js';

/**
 * Multi-key recall (RULER's multi-key needle-in-a-haystack, Hsieh et al. 2024): `pairs` lines
 * "KEY: VALUE" in the essay haystack, each with its own key, one of them asked. The asked pair sits at
 * depth d% of the haystack, the others at seeded random depths, so a model must find the value by its
 * key, not by being the only number in the text. Keys are adjective-noun pairs, values 7-digit numbers;
 * right when the greedy answer contains the asked value (RULER's string match).
 */
export const MULTIKEY_INSTRUCTION = 'Some keys and their values are hidden within the following text. Make sure to memorize them. I will quiz you about the value of one key afterwards.\n';
const ADJECTIVES = ['amber', 'bold', 'calm', 'dusty', 'eager', 'faint', 'gentle', 'hollow', 'icy', 'jolly', 'keen', 'lucky', 'misty', 'noble', 'quiet', 'rapid'];
const NOUNS = ['anchor', 'badger', 'canyon', 'dragon', 'ember', 'forest', 'glacier', 'hammer', 'island', 'jungle', 'kettle', 'ladder', 'magnet', 'needle', 'orchid', 'parrot'];
const ANSWER_TOKENS = 14;

export interface KeyValue {
  key: string;
  value: number;
}

export function multikeyLine(pair: KeyValue): string {
  return `\n${pair.key}: ${pair.value}\n`;
}

export function multikeyQuestion(key: string): string {
  return `\nWhat is the value of the key ${key}? The value of the key ${key} is`;
}

/**
 * The prompt's token ids: `pairs[i]` at `depths[i]`% of `length` tokens of haystack (moved back to a
 * sentence end), then the question about `asked`. `hay` is the essays' ids unless given.
 */
export function multikeyPrompt(
  model: Model,
  length: number,
  pairs: readonly KeyValue[],
  depths: readonly number[],
  asked: string,
  offset = 0,
  hay = haystackIds(model),
): number[] {
  const head = [...bosIds(model), ...encode(model, MULTIKEY_INSTRUCTION)];
  const lines = pairs.map((p) => encode(model, multikeyLine(p)));
  const question = encode(model, multikeyQuestion(asked));
  const room = length - head.length - lines.reduce((n, l) => n + l.length, 0) - question.length;
  if (room < 1) throw new UsageError(`multikey length ${length} leaves no room for the haystack with ${pairs.length} pairs (at least ${length - room + 1} tokens)`);
  const start = offset % Math.max(1, hay.length - room);
  const context = hay.slice(start, start + room);
  const at = depths.map((d) => (d >= 100 ? context.length : sentenceBoundary(model, context, Math.round((context.length * d) / 100))));
  const order = pairs.map((_, i) => i).sort((a, b) => at[a]! - at[b]! || a - b);
  const out = [...head];
  let from = 0;
  for (const i of order) {
    out.push(...context.slice(from, at[i]), ...lines[i]!);
    from = at[i]!;
  }
  return [...out, ...context.slice(from), ...question];
}

/** `count` distinct keys and 7-digit values drawn from `random`. */
export function drawPairs(random: () => number, count: number): KeyValue[] {
  if (count > ADJECTIVES.length * NOUNS.length) throw new UsageError(`multikey pairs must be at most ${ADJECTIVES.length * NOUNS.length}, got ${count}`);
  const keys = new Set<string>();
  while (keys.size < count) keys.add(`${ADJECTIVES[Math.floor(random() * ADJECTIVES.length)]}-${NOUNS[Math.floor(random() * NOUNS.length)]}`);
  return [...keys].map((key) => ({ key, value: 1_000_000 + Math.floor(random() * 9_000_000) }));
}

/** One trial's prompt and its check: the first of the seeded pairs is asked, at `depth`; the rest anywhere. */
export function multikeyTrial(model: Model, seed: number, pairs: number, length: number, depth: number, trial: number) {
  const random = seededRandom(mixSeed(seed, length, depth, trial, 11));
  const drawn = drawPairs(random, pairs);
  const depths = drawn.map((_, i) => (i === 0 ? depth : Math.floor(random() * 101)));
  const asked = drawn[0]!;
  // each trial reads a different stretch of the essays
  const prompt = multikeyPrompt(model, length, drawn, depths, asked.key, trial * 4096);
  return { prompt, pairs: drawn, check: (answer: string) => answer.includes(String(asked.value)) };
}

export async function multikey(model: Model, o: GridOptions & { pairs: number }): Promise<GridResult> {
  if (!Number.isInteger(o.pairs) || o.pairs < 1) throw new UsageError(`multikey pairs must be a positive integer, got ${o.pairs}`);
  for (const length of o.lengths) checkFits(model, length, ANSWER_TOKENS, `multikey length ${length}`);
  return runGrid(model, o, (length, depth, trial) => multikeyTrial(model, o.seed, o.pairs, length, depth, trial), ANSWER_TOKENS);
}
