/**
 * The cache trace file: JSON Lines, one record per line, written as the run goes (see docs/trace.md).
 * This module is shared by the recorder (Node) and the viewer (browser): it imports nothing.
 *
 * Per step and per (layer, KV head) a step record holds what changed since the previous step:
 * positions added and dropped (ascending, gap-encoded), the key/value quantization errors that are
 * new (those of added tokens, and of tokens the codec packed since), and the policy score of every
 * held token in ascending position order (scores change every step, so they are written whole).
 */

export const TRACE_FORMAT = 'kvpack-trace';
export const TRACE_VERSION = 1;

export interface HeaderRecord {
  type: 'trace';
  format: typeof TRACE_FORMAT;
  version: number;
  model: string;
  layers: number;
  kvHeads: number;
  /** The byte bound the writer enforced. */
  maxBytes: number;
}

/** The text every run was fed: the prompt's `prompt` tokens, then the generated ones. */
export interface TokensRecord {
  type: 'tokens';
  ids: number[];
  pieces: string[];
  prompt: number;
}

export interface RunRecord {
  type: 'run';
  run: number;
  spec: string;
  /** What the policy's score means (e.g. "accumulated attention"), or undefined if it has none. */
  score?: string;
  /** Whether steps carry key/value errors (codecs that do not store f32). */
  errors: boolean;
}

/** One (layer, KV head)'s change at a step; empty arrays are left out. */
export interface HeadDelta {
  /** Positions added, gap-encoded. */
  a?: number[];
  /** Positions dropped, gap-encoded. */
  d?: number[];
  /** Score of each held token, ascending position. */
  s?: number[];
  /** Positions whose key/value errors are new at this step (added, or packed since), gap-encoded. */
  e?: number[];
  /** Relative L2 error of the stored key, and of the stored value, of each position in `e`. */
  ke?: number[];
  ve?: number[];
}

export interface StepRecord {
  type: 'step';
  run: number;
  step: number;
  /** Tokens fed so far. */
  tokens: number;
  /** Layer-major: heads[layer × kvHeads + head]. */
  heads: HeadDelta[];
}

export interface EndRecord {
  type: 'end';
  run: number;
  steps: number;
  /** True when the byte bound stopped recording before the run ended. */
  truncated: boolean;
  kvBytesPeak: number;
}

export type TraceRecord = HeaderRecord | TokensRecord | RunRecord | StepRecord | EndRecord;

/** Ascending integers → first value, then differences. */
export function gapEncode(sorted: ArrayLike<number>): number[] {
  const out = new Array<number>(sorted.length);
  for (let i = 0; i < sorted.length; i++) out[i] = i === 0 ? sorted[0]! : sorted[i]! - sorted[i - 1]!;
  return out;
}

export function gapDecode(gaps: readonly number[] | undefined): number[] {
  const out: number[] = [];
  let at = 0;
  for (const g of gaps ?? []) out.push((at += g));
  return out;
}

/** Four significant digits: enough to rank and shade, and a third of the bytes of a full float. */
export function compactNumber(x: number): number {
  return Number.isFinite(x) ? Number(x.toPrecision(4)) : 0;
}
