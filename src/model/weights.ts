import { ModelFormatError, UnsupportedModelError } from '../errors.js';
import type { Kernels, Matrix } from '../kernels/api.js';
import { BLOCK_FORMATS, dequantize } from '../kernels/ggml/index.js';
import { f16Table, bf16ToF32 } from '../kernels/half.js';
import type { LayerGroup, LayerGroups } from '../cache/layer-groups.js';
import type { Checkpoint } from './checkpoint.js';
import type { ModelConfig } from './config.js';
import { firstNonFinite, TensorNames as N, type RawTensor } from './tensor.js';

export interface LayerWeights {
  attnNorm: number;
  wq: Matrix;
  wk: Matrix;
  wv: Matrix;
  wo: Matrix;
  /** Qwen2 biases (f32 pointers), 0 when absent. */
  bq: number;
  bk: number;
  bv: number;
  /** Qwen3 per-head q/k RMSNorm weights (f32 [headDim] pointers), 0 when absent. */
  qNorm: number;
  kNorm: number;
  ffnNorm: number;
  wGate: Matrix;
  wUp: Matrix;
  wDown: Matrix;
}

export interface Weights {
  /** The embedding, final norm and classifier live in the first group's memory. */
  embed: Matrix;
  finalNorm: number;
  lmHead: Matrix;
  /** Every layer's weights, in its group's memory. */
  groups: LayerGroups<WeightGroup>;
  /** Bytes of kernel memory the weights occupy, in every memory. */
  bytes: number;
}

/** A layer group and the weights of its layers [from, to), in its kernels' memory. */
export interface WeightGroup extends LayerGroup {
  layers: LayerWeights[];
}

/**
 * Copies a checkpoint's tensors into kernel memory: each group's layers into its memory, and the
 * embedding, final norm and classifier into the first group's. Matrices keep their stored dtype (a
 * 16-bit model reads half the bytes per token); norms and biases become f32 because they are tiny.
 */
export function uploadWeights(placement: LayerGroups, config: ModelConfig, ckpt: Checkpoint): Weights {
  const up = uploader(placement.first.kernels, ckpt);
  const embed = up.matrix(N.embed);
  let bytes = 0;
  const groups = placement.map((g) => {
    const layers = uploadLayers(g.kernels, config, ckpt, g.from, g.to);
    bytes += layers.bytes;
    return { ...g, layers: layers.layers };
  });
  const finalNorm = up.vector(N.finalNorm);
  const lmHead = config.tiedEmbeddings || !ckpt.tensors.has(N.lmHead) ? embed : up.matrix(N.lmHead);
  return { embed, finalNorm, lmHead, groups, bytes: up.bytes() + bytes };
}

/** Copies layers [from, to) of a checkpoint into a layer group's kernel memory. */
function uploadLayers(k: Kernels, config: ModelConfig, ckpt: Checkpoint, from: number, to: number): { layers: LayerWeights[]; bytes: number } {
  const { matrix, vector, bytes } = uploader(k, ckpt);
  const optionalVector = (name: string): number => (ckpt.tensors.has(name) ? vector(name) : 0);
  const layers: LayerWeights[] = [];
  for (let l = from; l < to; l++) {
    layers.push({
      attnNorm: vector(N.attnNorm(l)),
      wq: matrix(N.wq(l)),
      wk: matrix(N.wk(l)),
      wv: matrix(N.wv(l)),
      wo: matrix(N.wo(l)),
      bq: optionalVector(N.bq(l)),
      bk: optionalVector(N.bk(l)),
      bv: optionalVector(N.bv(l)),
      qNorm: optionalVector(N.qNorm(l)),
      kNorm: optionalVector(N.kNorm(l)),
      ffnNorm: vector(N.ffnNorm(l)),
      wGate: matrix(N.wGate(l)),
      wUp: matrix(N.wUp(l)),
      wDown: matrix(N.wDown(l)),
    });
  }
  return { layers, bytes: bytes() };
}

/** Copies named tensors into kernel memory, counting the bytes. */
function uploader(k: Kernels, ckpt: Checkpoint) {
  let bytes = 0;
  const get = (name: string): RawTensor => {
    const t = ckpt.tensors.get(name);
    if (!t) throw new Error(`internal: tensor ${name} was validated but is missing`);
    return t;
  };
  // a NaN or Inf weight makes every logit NaN: greedy would print nothing and perplexity NaN, silently
  const checkFinite = (t: RawTensor, name: string, bad: number) => {
    if (bad >= 0) throw new ModelFormatError(ckpt.source, `tensor ${t.name} (${name}) holds a non-finite number (NaN or ±Inf) at element ${bad}`);
  };
  return {
    matrix(name: string): Matrix {
      const t = get(name);
      const data = t.data; // once: a large checkpoint reads it from the file on each access
      checkFinite(t, name, firstNonFinite({ name: t.name, dtype: t.dtype, shape: t.shape, data }));
      const ptr = k.arena.alloc(data.byteLength);
      k.arena.u8(ptr, data.byteLength).set(data);
      bytes += data.byteLength;
      return { ptr, dtype: t.dtype, rows: t.shape[0]!, cols: t.shape[1]! };
    },
    vector(name: string): number {
      const t = get(name);
      const values = toF32(t, ckpt.source);
      checkFinite(t, name, values.findIndex((v) => !Number.isFinite(v)));
      const ptr = k.arena.alloc(values.length * 4);
      k.arena.f32(ptr, values.length).set(values);
      bytes += values.length * 4;
      return ptr;
    },
    bytes: () => bytes,
  };
}

/** A small tensor's values as f32 (norm weights, biases). */
export function toF32(t: RawTensor, file: string): Float32Array {
  const d = t.data;
  const count = t.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(count);
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
  switch (t.dtype) {
    case 'f32':
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(i * 4, true);
      return out;
    case 'f16': {
      const table = f16Table();
      for (let i = 0; i < count; i++) out[i] = table[view.getUint16(i * 2, true)]!;
      return out;
    }
    case 'bf16':
      for (let i = 0; i < count; i++) out[i] = bf16ToF32(view.getUint16(i * 2, true));
      return out;
    default:
      if (count % BLOCK_FORMATS[t.dtype].blockValues !== 0) {
        throw new UnsupportedModelError(file, `tensor ${t.name} is ${t.dtype} but its ${count} values are not whole blocks`);
      }
      return dequantize(BLOCK_FORMATS[t.dtype], d, 1, count);
  }
}
