import type { DType } from '../kernels/dtype.js';

export { dtypeBytes, type DType } from '../kernels/dtype.js';

/** A tensor as stored in its file: row-major, outermost dimension first, little-endian bytes. */
export interface RawTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
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
