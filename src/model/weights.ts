import { ModelFormatError, UnsupportedModelError } from '../errors.js';
import type { Kernels, Matrix } from '../kernels/api.js';
import { BLOCK_FORMATS, dequantize } from '../kernels/ggml/index.js';
import { f16Table, bf16ToF32 } from '../kernels/half.js';
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
  embed: Matrix;
  layers: LayerWeights[];
  finalNorm: number;
  lmHead: Matrix;
  /** Bytes of kernel memory the weights occupy. */
  bytes: number;
}

/**
 * Copies a checkpoint's tensors into kernel memory. Matrices keep their stored dtype (a 16-bit model
 * reads half the bytes per token); norms and biases become f32 because they are tiny.
 */
export function uploadWeights(k: Kernels, config: ModelConfig, ckpt: Checkpoint): Weights {
  let bytes = 0;
  const get = (name: string): RawTensor => {
    const t = ckpt.tensors.get(name);
    if (!t) throw new Error(`internal: tensor ${name} was validated but is missing`);
    // a NaN or Inf weight makes every logit NaN: greedy would print nothing and perplexity NaN, silently
    const bad = firstNonFinite(t);
    if (bad >= 0) throw new ModelFormatError(ckpt.source, `tensor ${t.name} (${name}) holds a non-finite number (NaN or ±Inf) at element ${bad}`);
    return t;
  };
  const matrix = (name: string): Matrix => {
    const t = get(name);
    const ptr = k.arena.alloc(t.data.byteLength);
    k.arena.u8(ptr, t.data.byteLength).set(t.data);
    bytes += t.data.byteLength;
    return { ptr, dtype: t.dtype, rows: t.shape[0]!, cols: t.shape[1]! };
  };
  const vector = (name: string): number => {
    const t = get(name);
    const values = toF32(t, ckpt.source);
    const ptr = k.arena.alloc(values.length * 4);
    k.arena.f32(ptr, values.length).set(values);
    bytes += values.length * 4;
    return ptr;
  };
  const optionalVector = (name: string): number => (ckpt.tensors.has(name) ? vector(name) : 0);

  const embed = matrix(N.embed);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
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
  const finalNorm = vector(N.finalNorm);
  const lmHead = config.tiedEmbeddings || !ckpt.tensors.has(N.lmHead) ? embed : matrix(N.lmHead);
  return { embed, layers, finalNorm, lmHead, bytes };
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
