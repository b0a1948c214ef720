import type { Arena } from './arena.js';
import type { QuantAttentionArgs, QuantizeArgs } from './packed/types.js';
import type { Rope } from './rope.js';
import type { AttentionArgs, Matrix, MatmulPart, SimdBuild, SlotDType } from './types.js';

export type { AttentionArgs, Matrix, MatmulPart, SimdBuild, SlotDType } from './types.js';

/**
 * The numeric kernels of the forward pass. All pointers are byte offsets into `arena.memory`; every
 * buffer is f32 unless a parameter says otherwise. Implemented twice: a scalar TypeScript reference and
 * WebAssembly SIMD with a thread pool; tests hold them to each other.
 */
export interface Kernels {
  readonly backend: 'reference' | 'wasm';
  /** Which wasm kernel build runs (null: the scalar reference). */
  readonly simd: SimdBuild | null;
  readonly threads: number;
  readonly arena: Arena;
  /** out[n × w.rows] = x[n × w.cols] · wᵀ. */
  matmul(out: number, x: number, w: Matrix, n: number): void;
  /** matmul of one x with each part's matrix (q, k and v; gate and up): as one job where their dtype and cols agree. */
  matmuls(x: number, parts: readonly MatmulPart[], n: number): void;
  /** out[i] = x[i] / rms(x[i]) * weight, for n rows of dim. */
  rmsnorm(out: number, x: number, weight: number, n: number, dim: number, eps: number): void;
  /** Rotates n rows of `heads` heads of rope.headDim in place; positions is an Int32 [n]. */
  rope(x: number, n: number, heads: number, positions: number, rope: Rope): void;
  /**
   * Keys kept before RoPE, rotated into an f32 copy: for `heads` blocks of rows `stride` rows apart and
   * their first n rows each, dst row r (f32) = src row r (rope.headDim numbers of `dtype`) turned to
   * positions[r] (Int32, each ≥ 0), as `rope` turns an f32 row.
   */
  ropeRows(dst: number, src: number, dtype: SlotDType, n: number, heads: number, stride: number, positions: number, rope: Rope): void;
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
  /** Attention straight from packed (quantized) key/value storage (src/kernels/packed/types.ts). */
  quantAttention(args: QuantAttentionArgs): void;
  /** Quantizes rows into a packed store: codes and, on the token axis, scales and zeros. */
  quantize(args: QuantizeArgs): void;
  /**
   * XOR of the u32 words of [src, src + bytes) (bytes a multiple of 64): a streaming read of the buffer
   * on every thread, for measuring the memory bandwidth kernels can reach.
   */
  xorWords(src: number, bytes: number): number;
  /** Stops worker threads. */
  close(): Promise<void>;
}
