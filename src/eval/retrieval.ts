import { UsageError } from '../errors.js';
import type { Model } from '../engine/model.js';
import type { Session } from '../engine/session.js';

/** What passkey and needle share: grids of (length, depth), prompts built in token ids, greedy answers. */

/** "256,512,1024" → [256, 512, 1024]; each an integer in [min, max]. */
export function parseIntList(text: string, what: string, min: number, max = Infinity): number[] {
  const parts = text.split(',').map((s) => s.trim());
  const out = parts.map(Number);
  if (parts.some((s) => s === '') || out.some((n) => !Number.isInteger(n) || n < min || n > max)) {
    throw new UsageError(`${what} must be a comma-separated list of integers in [${min}, ${max === Infinity ? '∞' : max}], got "${text}"`);
  }
  return out;
}

/** The metric name of one cell of a (length, depth) grid; the report's heatmaps read these back. */
export function cellMetric(length: number, depth: number): string {
  return `acc_L${length}_d${depth}`;
}

/** Reads a grid back from a row's metrics: lengths, depths and accuracy per cell. */
export function readGrid(metrics: Record<string, number>): { lengths: number[]; depths: number[]; acc: Map<string, number> } {
  const lengths = new Set<number>();
  const depths = new Set<number>();
  const acc = new Map<string, number>();
  for (const [name, value] of Object.entries(metrics)) {
    const m = /^acc_L(\d+)_d(\d+)$/.exec(name);
    if (!m) continue;
    lengths.add(Number(m[1]));
    depths.add(Number(m[2]));
    acc.set(`${m[1]},${m[2]}`, value);
  }
  return { lengths: [...lengths].sort((a, b) => a - b), depths: [...depths].sort((a, b) => a - b), acc };
}

/** Token ids of text without BOS. */
export function encode(model: Model, text: string): number[] {
  return model.tokenizer.encode(text, { addBos: false });
}

/** BOS when the tokenizer adds one by default (llama2.c), nothing otherwise (ref-6m). */
export function bosIds(model: Model): number[] {
  const tok = model.tokenizer;
  return tok.addBosByDefault && tok.bos !== undefined ? [tok.bos] : [];
}

export function checkFits(model: Model, length: number, answerTokens: number, what: string): void {
  const limit = model.config.maxContext;
  if (length + answerTokens > limit) {
    throw new UsageError(`${what}: a ${length}-token prompt plus ${answerTokens} answer tokens exceeds the model's context of ${limit}; use shorter lengths`);
  }
}

/** Greedy continuation of a token prompt from an empty cache (the prompt is compressed as a whole, then each token). */
export async function greedyAnswer(session: Session, prompt: readonly number[], maxTokens: number): Promise<string> {
  session.reset();
  let text = '';
  for await (const piece of session.generate(prompt, { maxTokens, temperature: 0 })) text += piece;
  return text;
}

/** The first run of digits in a text, as the landmark-attention passkey check reads an answer. */
export function firstInteger(text: string): string | undefined {
  return /\d+/.exec(text)?.[0];
}

/** A small integer hash of a few numbers, to derive per-cell seeds. */
export function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const p of parts) {
    h ^= p >>> 0;
    h = Math.imul(h, 0x01000193) >>> 0;
    h ^= h >>> 13;
  }
  return h >>> 0;
}
