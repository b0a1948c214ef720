import type { DType } from './dtype.js';

/* Argument types of the kernels (api.ts), below both api.ts and quant/types.ts. */

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

/** One matrix of a `matmuls` call and where its product goes. */
export interface MatmulPart {
  out: number;
  w: Matrix;
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
  /** The keys' dtype where it differs: f32 keys beside f16 values (pre-RoPE f16 keys rotated at read). */
  keyDtype?: 'f32';
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
 * The two wasm kernel builds of one source: `relaxed` adds relaxed SIMD (FMA and i8 dot products),
 * `simd128` runs wherever WebAssembly SIMD does.
 */
export type SimdBuild = 'simd128' | 'relaxed';

/**
 * How quantized (GGML block) weights meet the activations in a one-token matvec. `fast`: the
 * activations are rounded to 8 bits (per 32 values, per 256 for the K-quants: llama.cpp's Q8_0 / Q8_K)
 * and the codes meet them in integer dot products, as llama.cpp computes. `exact`: f32 activations,
 * each block decoded and widened. Prefill (several tokens) is exact either way. docs/gguf.md measures both.
 */
export type MatmulMode = 'fast' | 'exact';
export const MATMUL_MODES: readonly MatmulMode[] = ['fast', 'exact'];
