import type { GgmlFormat } from './format.js';
import { IQ4_NL, IQ4_XS } from './iq4.js';
import { Q2_K, Q3_K, Q4_K, Q5_K, Q6_K } from './kquants.js';
import { Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 } from './legacy.js';

export type { GgmlFormat } from './format.js';

/** The quantized GGML formats kvpack reads, by the dtype name a weight matrix carries. */
export const BLOCK_FORMATS = {
  q4_0: Q4_0, q4_1: Q4_1, q5_0: Q5_0, q5_1: Q5_1, q8_0: Q8_0,
  q2_k: Q2_K, q3_k: Q3_K, q4_k: Q4_K, q5_k: Q5_K, q6_k: Q6_K, iq4_nl: IQ4_NL, iq4_xs: IQ4_XS,
} as const;
export type BlockDType = keyof typeof BLOCK_FORMATS;

export function isBlockDType(dtype: string): dtype is BlockDType {
  return Object.hasOwn(BLOCK_FORMATS, dtype);
}

/** The dtype of ggml type id `id`, if kvpack reads it as blocks. */
export function blockDTypeOfGgmlId(id: number): BlockDType | undefined {
  return (Object.keys(BLOCK_FORMATS) as BlockDType[]).find((k) => BLOCK_FORMATS[k].id === id);
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
