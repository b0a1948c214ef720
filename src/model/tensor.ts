import { BLOCK_FORMATS, isBlockDType, rowBytes, type BlockDType } from '../kernels/ggml/index.js';

/** Storage types kvpack reads from checkpoints and keeps as they are: floats, or GGML blocks (src/kernels/ggml). */
export type DType = 'f32' | 'f16' | 'bf16' | BlockDType;

/** A tensor as stored in its file: row-major, outermost dimension first, little-endian bytes. */
export interface RawTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

/** Q8_0: blocks of 32 int8 values, each block led by an f16 scale (34 bytes). */
export const Q8_0_BLOCK = 32;
export const Q8_0_BLOCK_BYTES = 34;

/** Bytes needed to store `count` numbers of a dtype (count must be a multiple of a block type's block). */
export function dtypeBytes(dtype: DType, count: number): number {
  if (isBlockDType(dtype)) return rowBytes(BLOCK_FORMATS[dtype], count);
  return dtype === 'f32' ? count * 4 : count * 2;
}

/**
 * Canonical tensor names every loader maps its file's names onto. Matrices are [out, in]
 * (HF / llama2.c orientation). Per-layer names take the layer index.
 */
export const TensorNames = {
  embed: 'embed',                 // [vocab, hidden]
  finalNorm: 'final_norm',        // [hidden]
  lmHead: 'lm_head',              // [vocab, hidden]; absent when embeddings are tied
  attnNorm: (l: number) => `layers.${l}.attn_norm`, // [hidden]
  wq: (l: number) => `layers.${l}.wq`,             // [heads*headDim, hidden]
  wk: (l: number) => `layers.${l}.wk`,             // [kvHeads*headDim, hidden]
  wv: (l: number) => `layers.${l}.wv`,             // [kvHeads*headDim, hidden]
  wo: (l: number) => `layers.${l}.wo`,             // [hidden, heads*headDim]
  bq: (l: number) => `layers.${l}.bq`,             // [heads*headDim] (qwen2)
  bk: (l: number) => `layers.${l}.bk`,             // [kvHeads*headDim] (qwen2)
  bv: (l: number) => `layers.${l}.bv`,             // [kvHeads*headDim] (qwen2)
  qNorm: (l: number) => `layers.${l}.q_norm`,      // [headDim] (qwen3)
  kNorm: (l: number) => `layers.${l}.k_norm`,      // [headDim] (qwen3)
  ffnNorm: (l: number) => `layers.${l}.ffn_norm`,  // [hidden]
  wGate: (l: number) => `layers.${l}.w_gate`,      // [ffn, hidden]
  wUp: (l: number) => `layers.${l}.w_up`,          // [ffn, hidden]
  wDown: (l: number) => `layers.${l}.w_down`,      // [hidden, ffn]
} as const;
