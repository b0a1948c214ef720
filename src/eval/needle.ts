import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import type { Model } from '../engine/model.js';
import { seededRandom } from '../util/random.js';
import { sharedDataDir } from './data.js';
import { runGrid, type GridOptions, type GridResult } from './passkey.js';
import { bosIds, checkFits, encode, mixSeed } from './retrieval.js';

/**
 * Needle in a haystack (Kamradt's test, with RULER's single-needle wording so the answer can be
 * checked without a judge model): Paul Graham essays from ../shared/data/haystack cut to the prompt
 * length, the needle "One of the special magic numbers for KEY is: VALUE." placed at depth d% of the
 * haystack (moved back to the nearest sentence end, as Kamradt's script does), then the question.
 * Right when the greedy answer contains the 7-digit value (RULER's string match).
 */
export const NEEDLE_INSTRUCTION = 'Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards.\n';
const KEYS = ['orange', 'river', 'lantern', 'falcon', 'meadow', 'copper', 'harbor', 'violet', 'summit', 'pebble', 'thunder', 'willow'];
const ANSWER_TOKENS = 14;

export function needleSentence(key: string, value: number): string {
  return `One of the special magic numbers for ${key} is: ${value}.`;
}

export function needleQuestion(key: string): string {
  return `\nWhat is the special magic number for ${key} mentioned in the provided text? The special magic number for ${key} mentioned in the provided text is`;
}

/** The essays, in file-name order, joined by blank lines. */
export function loadHaystack(): string {
  const dir = path.join(sharedDataDir(), 'haystack');
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.txt')).sort();
  } catch (e) {
    throw new UsageError(`cannot read the haystack essays in ${dir}: ${(e as Error).message}`);
  }
  if (names.length === 0) throw new UsageError(`${dir} has no .txt essays`);
  return names.map((n) => fs.readFileSync(path.join(dir, n), 'utf8').trim()).join('\n\n');
}

const haystacks = new WeakMap<Model, number[]>();

export function haystackIds(model: Model): number[] {
  let ids = haystacks.get(model);
  if (!ids) {
    ids = encode(model, loadHaystack());
    haystacks.set(model, ids);
  }
  return ids;
}

/** Index after the last sentence-ending token at or before `at` (0 when none). */
export function sentenceBoundary(model: Model, ids: readonly number[], at: number): number {
  for (let i = at; i > 0; i--) {
    if (/[.!?]\s*$/.test(model.tokenizer.decode([ids[i - 1]!]))) return i;
  }
  return 0;
}

/** `hay` is the essays' ids unless given (the recall model's training uses other text in this format). */
export function needlePrompt(model: Model, length: number, depth: number, key: string, value: number, offset = 0, hay = haystackIds(model)): number[] {
  const head = [...bosIds(model), ...encode(model, NEEDLE_INSTRUCTION)];
  const needle = encode(model, ` ${needleSentence(key, value)} `);
  const question = encode(model, needleQuestion(key));
  const room = length - head.length - needle.length - question.length;
  if (room < 1) throw new UsageError(`needle length ${length} leaves no room for the haystack (at least ${length - room + 1} tokens)`);
  const start = offset % Math.max(1, hay.length - room);
  const context = hay.slice(start, start + room);
  const at = depth >= 100 ? context.length : sentenceBoundary(model, context, Math.round((context.length * depth) / 100));
  return [...head, ...context.slice(0, at), ...needle, ...context.slice(at), ...question];
}

export async function needle(model: Model, o: GridOptions): Promise<GridResult> {
  for (const length of o.lengths) checkFits(model, length, ANSWER_TOKENS, `needle length ${length}`);
  return runGrid(model, o, (length, depth, trial) => {
    const random = seededRandom(mixSeed(o.seed, length, depth, trial, 7));
    const key = KEYS[Math.floor(random() * KEYS.length)]!;
    const value = 1_000_000 + Math.floor(random() * 9_000_000);
    // each trial reads a different stretch of the essays
    const prompt = needlePrompt(model, length, depth, key, value, trial * 4096);
    return { prompt, check: (answer) => answer.includes(String(value)) };
  }, ANSWER_TOKENS);
}
