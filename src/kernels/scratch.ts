import { ATT_BLOCK, BLOCK_SCRATCH, QATT_TILE } from './abi.js';

/**
 * Per-thread scratch of the two attention kernels (the layouts at the top of attendItem in
 * assembly/attention.ts and qattendItem in assembly/packed-attention.ts) and of the matmul
 * (assembly/matmul.ts): the one owner of those sizes, for the kernels that allocate it and the memory
 * plan that reserves it.
 */

export type AttentionKind = 'float' | 'packed';

/** Query rows per work item of a block of queries at most (with all the heads of a group). */
const MAX_QUERY_BLOCK = 16;
/** The scores of one item's block of queries are kept to about this many bytes per thread. */
const SCORE_BYTES = 1 << 21;

function ceil4(v: number): number {
  return Math.ceil(v / 4) * 4;
}

/** Queries per work item for n queries, hg heads per item and `seen` slots (the last query's). */
export function queryBlock(n: number, hg: number, seen: number): number {
  return Math.max(1, Math.min(MAX_QUERY_BLOCK, n, Math.floor(SCORE_BYTES / (4 * hg * ceil4(seen)))));
}

/** Everything but the scores: per kind, for `rows` (query, head) rows of head size d. */
function fixedBytes(kind: AttentionKind, rows: number, d: number): number {
  // converted block, accumulators, 1/sums, prescaled queries (one-query f16 path)
  if (kind === 'float') return 4 * (ATT_BLOCK * d + 2 * rows * d + rows) + 64;
  // tile, accumulators, 1/sums, channel scales; then the integer paths' stage, i16 queries, their units
  // and group sums, zero sums, pair weights and tile scales; the fast path's two level tables, units and constants
  const intBytes = 2 * (d + 64) + 4 * rows * d + 4 * rows + rows * d / 4 + 4 * rows + 4 * rows * QATT_TILE + 4 * Math.max((QATT_TILE * d) / 8, 2 * QATT_TILE) + 64 + 8 * rows;
  return 4 * (QATT_TILE * d + 64 + rows * d + rows + 4 + 2 * d) + intBytes + 64;
}

/** Bytes one thread's attention scratch takes for `rows` rows over `seen` slots: a score per slot and row, and the rest. */
export function attentionScratchBytes(kind: AttentionKind, rows: number, seen: number, d: number): number {
  return 4 * rows * ceil4(seen) + fixedBytes(kind, rows, d);
}

/**
 * The most one thread's scratch takes for any attention call of either kernel with up to `context`
 * slots: a whole KV group's heads over every slot (one query), or a block of queries whose scores
 * `queryBlock` keeps to SCORE_BYTES.
 */
export function attentionScratchBound(numHeads: number, numKvHeads: number, d: number, context: number): number {
  const group = numHeads / numKvHeads;
  const rows = MAX_QUERY_BLOCK * group;
  const scores = Math.max(SCORE_BYTES, 4 * group * ceil4(context));
  return scores + Math.max(fixedBytes('float', rows, d), fixedBytes('packed', rows, d));
}

/**
 * Tokens per matmul up to which the fast way takes block weights on integer dot products (each block
 * unpacked once per 4 tokens, every token's result its one-token matvec's); above, the f32 register
 * tiles of dequantized rows are as fast or faster on 128-bit SIMD (about 4 multiply-adds per
 * instruction with FMA, against 2.5–6 for pmaddubsw, the widening and the per-block scaling; docs/gguf.md),
 * so prefill chunks take them as the exact way does.
 */
export const INT_DOT_MAX_TOKENS = 16;

/** How a matmul's threads use their scratch (assembly/matmul.ts): 'prescaled' one f16 token's x · 2^112,
 *  'prepared' the block types' 8-bit activations of every token (the integer way), 'tiles' the f32
 *  prefill's dequantised rows, 'none' nothing. */
export type MatmulScratch = 'prescaled' | 'prepared' | 'few' | 'tiles' | 'none';

/** Bytes of one token's prepared activations (assembly/ggml.ts prepareActivations: f32 and i32 sums per
 *  16, a scale per 32, the 8-bit codes as at most i16, i16 sums per 32), 16-aligned as preparedStride
 *  keeps them. */
function preparedBytes(cols: number): number {
  return Math.ceil(((cols / 16) * 8 + (cols / 32) * 4 + cols * 2 + (cols / 32) * 2) / 16) * 16;
}

/** Rows per work item of the f32 prefill tiles at most: the item's dequantised rows stay around 256 KiB (L2). */
export function tileRows(cols: number): number {
  return Math.max(4, Math.floor(262144 / (cols * 4) / 4) * 4);
}

/** Bytes one thread's matmul scratch takes for n tokens of `cols` inputs and `chunk` rows per item. */
export function matmulScratchBytes(how: MatmulScratch, n: number, cols: number, chunk: number): number {
  // one decoded block (BLOCK_SCRATCH) after the prepared activations or the tiles; several tokens' also
  // have, per 4 tokens, their scales and code sums side by side (assembly/ggml.ts prepareTokens)
  if (how === 'prepared') return n * preparedBytes(cols) + (n > 1 ? Math.ceil(n / 4) * cols : 0) + BLOCK_SCRATCH;
  // the chunk's rows packed by quads, 4 rows converted before packing
  if (how === 'tiles') return (chunk + 4) * cols * 4 + BLOCK_SCRATCH;
  // float weights for a few tokens: one packed quad of rows (assembly/matmul.ts matmulFew), or as
  // many bytes of f16's up to 4 prescaled tokens (dotF16sFew)
  if (how === 'few') return cols * 16;
  return how === 'prescaled' ? cols * 4 : 0;
}

/** The most one thread's matmul scratch takes for chunks of up to maxChunk tokens and inputs of up to
 *  maxCols numbers, either way. */
export function matmulScratchBound(maxChunk: number, maxCols: number): number {
  return Math.max(matmulScratchBytes('prepared', Math.min(maxChunk, INT_DOT_MAX_TOKENS), maxCols, 0), matmulScratchBytes('tiles', maxChunk, maxCols, Math.min(64, tileRows(maxCols))));
}
