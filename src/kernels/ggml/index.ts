import type { GgmlFormat } from './format.js';
import { IQ4_NL, IQ4_XS } from './iq4.js';
import { Q2_K, Q3_K, Q4_K, Q5_K, Q6_K } from './kquants.js';
import { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 } from './legacy.js';

export type { GgmlFormat } from './format.js';

/** The quantized GGML formats kvpack reads, by ggml name. */
export const GGML_FORMATS = { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS } as const;
export type GgmlQuantName = keyof typeof GGML_FORMATS;

/** The format with ggml type id `id`, if kvpack reads it. */
export function formatById(id: number): GgmlFormat | undefined {
  return Object.values(GGML_FORMATS).find((f) => f.id === id);
}

/** Bytes of one row of `cols` values (cols must be a multiple of the block size). */
export function rowBytes(f: GgmlFormat, cols: number): number {
  return (cols / f.blockValues) * f.blockBytes;
}

/** Dequantizes `rows` consecutive rows of `cols` values from `bytes` (the scalar reference). */
export function dequantize(f: GgmlFormat, bytes: Uint8Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const blocks = (rows * cols) / f.blockValues;
  for (let i = 0; i < blocks; i++) f.dequantizeBlock(bytes, i * f.blockBytes, out, i * f.blockValues);
  return out;
}
