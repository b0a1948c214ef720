import { BLOCK_FORMATS, isBlockDType, rowBytes, type BlockDType } from './ggml/index.js';

/** Storage types kvpack reads from checkpoints and keeps as they are: floats, or GGML blocks (src/kernels/ggml). */
export type DType = 'f32' | 'f16' | 'bf16' | BlockDType;

/** Bytes needed to store `count` numbers of a dtype (count must be whole blocks for a block type). */
export function dtypeBytes(dtype: DType, count: number): number {
  if (isBlockDType(dtype)) return rowBytes(BLOCK_FORMATS[dtype], count);
  return dtype === 'f32' ? count * 4 : count * 2;
}
