import { dtypeBytes, type DType } from '../kernels/dtype.js';
import { BLOCK_FORMATS } from '../kernels/ggml/index.js';

export { dtypeBytes, type DType } from '../kernels/dtype.js';

/** A tensor as stored in its file: row-major, outermost dimension first, little-endian bytes. */
export interface RawTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

/** What a checkpoint's header says of a tensor, before its data is read. */
export interface TensorShape {
  dtype: DType;
  shape: number[];
}

/** Parameters and stored bytes of a model's tensors, per stored dtype. */
export interface TensorSummary {
  parameters: number;
  /** Stored bytes (block scales included). */
  bytes: number;
  /** Parameters per stored dtype. */
  dtypes: Record<string, number>;
  /** Tensors per stored dtype. */
  tensorTypes: Record<string, number>;
}

export function summarizeTensors(tensors: Iterable<TensorShape>): TensorSummary {
  const s: TensorSummary = { parameters: 0, bytes: 0, dtypes: {}, tensorTypes: {} };
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    s.parameters += count;
    s.bytes += dtypeBytes(t.dtype, count); // from the shape, never t.data: a large GGUF reads each tensor again on access
    s.dtypes[t.dtype] = (s.dtypes[t.dtype] ?? 0) + count;
    s.tensorTypes[t.dtype] = (s.tensorTypes[t.dtype] ?? 0) + 1;
  }
  return s;
}

/** Index of the first NaN or ±Inf number in a tensor (a GGML block counts by its decoded values), or -1. */
export function firstNonFinite(t: RawTensor): number {
  const d = t.data;
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
  switch (t.dtype) {
    case 'f32':
      for (let i = 0; i + 4 <= d.byteLength; i += 4) if ((view.getUint32(i, true) & 0x7f800000) === 0x7f800000) return i / 4;
      return -1;
    case 'f16':
      for (let i = 0; i + 2 <= d.byteLength; i += 2) if ((view.getUint16(i, true) & 0x7c00) === 0x7c00) return i / 2;
      return -1;
    case 'bf16':
      for (let i = 0; i + 2 <= d.byteLength; i += 2) if ((view.getUint16(i, true) & 0x7f80) === 0x7f80) return i / 2;
      return -1;
    default: {
      // a non-finite scale decodes to NaN or ±Inf in its block (even times a zero code), so decoding finds it
      const f = BLOCK_FORMATS[t.dtype];
      const block = new Float32Array(f.blockValues);
      for (let at = 0, i = 0; at + f.blockBytes <= d.byteLength; at += f.blockBytes, i += f.blockValues) {
        f.dequantizeBlock(d, at, block, 0);
        const bad = block.findIndex((v) => !Number.isFinite(v));
        if (bad >= 0) return i + bad;
      }
      return -1;
    }
  }
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
