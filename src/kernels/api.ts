import type { RopeLayout } from '../model/config.js';
import type { DType } from '../model/tensor.js';
import type { Arena } from './arena.js';
import type { QuantAttentionArgs } from './quant/types.js';

/**
 * A weight matrix in kernel memory, row-major [rows = outputs, cols = inputs], kept in its stored dtype.
 * q8_0 rows are cols/32 blocks of 34 bytes.
 */
export interface Matrix {
  ptr: number;
  dtype: DType;
  rows: number;
  cols: number;
}

/** Storage of cached keys and values the attention kernel reads directly. */
export type SlotDType = 'f32' | 'f16';

/**
 * Causal attention of `n` new queries over a slot store.
 * The store holds, for each KV head h, `capacity` rows of headDim numbers at
 * `keys + (h * capacity + s) * headDim * bytes(dtype)` (same for `values`).
 * Query i (0-based within the n) sees slots [0, visible + i). Query head j reads KV head
 * j / (numHeads / numKvHeads) (GQA).
 */
export interface AttentionArgs {
  /** f32 [n × numHeads × headDim] output. */
  out: number;
  /** f32 [n × numHeads × headDim], RoPE already applied. */
  q: number;
  n: number;
  keys: number;
  values: number;
  dtype: SlotDType;
  capacity: number;
  visible: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** Multiplies q·k before the softmax (1/sqrt(headDim) for Llama). */
  scale: number;
  /** If non-zero: f32 [numHeads × capacity], overwritten with the last query's probabilities (zeros past its view). */
  lastProbs: number;
  /** If non-zero: f32 [numHeads × capacity], each query's probabilities are added in (attention received). */
  received: number;
  /**
   * If given and non-zero: u8 [numHeads × capacity]; a non-zero byte leaves that slot out of that
   * query head's softmax for every query of the call. At least one visible slot must stay in.
   */
  mask?: number;
}

/**
 * The numeric kernels of the forward pass. All pointers are byte offsets into `arena.memory`; every
 * buffer is f32 unless a parameter says otherwise. Implemented twice: a scalar TypeScript reference and
 * WebAssembly SIMD with a thread pool; tests hold them to each other.
 */
export interface Kernels {
  readonly backend: 'reference' | 'wasm';
  readonly threads: number;
  readonly arena: Arena;
  /** out[n × w.rows] = x[n × w.cols] · wᵀ. */
  matmul(out: number, x: number, w: Matrix, n: number): void;
  /** out[i] = x[i] / rms(x[i]) * weight, for n rows of dim. */
  rmsnorm(out: number, x: number, weight: number, n: number, dim: number, eps: number): void;
  /** Rotates n rows of `heads` heads in place; positions is an Int32 [n]. */
  rope(x: number, n: number, heads: number, headDim: number, positions: number, theta: number, layout: RopeLayout): void;
  /** In place, over len numbers. */
  softmax(x: number, len: number): void;
  /** out = silu(gate) * up over len numbers. */
  siluMul(out: number, gate: number, up: number, len: number): void;
  /** out += x over len numbers. */
  add(out: number, x: number, len: number): void;
  /** x[n × dim] += bias[dim]. */
  addBias(x: number, bias: number, n: number, dim: number): void;
  /** out[n × table.cols] = rows ids[0..n) (Int32) of the table, as f32. */
  embed(out: number, table: Matrix, ids: number, n: number): void;
  /** f16 out[len] = round-to-nearest-even of x[len]. */
  toF16(out: number, x: number, len: number): void;
  attention(args: AttentionArgs): void;
  /** Attention straight from packed (quantized) key/value storage (src/kernels/quant/types.ts). */
  quantAttention(args: QuantAttentionArgs): void;
  /** Stops worker threads. */
  close(): Promise<void>;
}
