/** Storage types kvpack reads from checkpoints and keeps as they are where a kernel exists. */
export type DType = 'f32' | 'f16' | 'bf16' | 'q8_0';

/** Q8_0: blocks of 32 int8 values, each block led by an f16 scale (34 bytes). */
export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 34;

/** Bytes needed to store `count` numbers of a dtype (count must be a multiple of 32 for q8_0). */
export function dtypeBytes(dtype: DType, count: number): number {
  switch (dtype) {
    case 'f32': return count * 4;
    case 'f16':
    case 'bf16': return count * 2;
    case 'q8_0': return (count / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  }
}
