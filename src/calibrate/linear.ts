import type { Kernels, Matrix } from '../kernels/api.js';
import type { ReferenceKernels } from '../kernels/reference.js';

export type Vec = Float32Array | Float64Array;

/** Products of activations with a weight matrix W [rows × cols] as stored in kernel memory. */
export interface LinearOps {
  /** y[n × rows] = x[n × cols] · Wᵀ (a layer's forward). */
  forward(w: Matrix, x: Vec, n: number): Vec;
  /** dx[n × cols] = dy[n × rows] · W (the gradient through it). */
  backward(w: Matrix, dy: Vec, n: number): Vec;
  /** a[n × k] · b[m × k]ᵀ → [n × m] (attention's products). */
  product(a: Vec, b: Vec, n: number, m: number, k: number): Vec;
}

/** W widened to f32 [rows × cols] from its stored dtype. */
function widen(ref: ReferenceKernels, w: Matrix): Float32Array {
  const out = new Float32Array(w.rows * w.cols);
  for (let r = 0; r < w.rows; r++) out.set(ref.row(w, r), r * w.cols);
  return out;
}

/**
 * Plain loops in the precision of `vec` (f64 for the finite-difference reference): the definition.
 * Keeps every matrix it met widened to f32 (for small models: tests and the reference backend).
 */
export function scalarLinear(ref: ReferenceKernels, vec: (n: number) => Vec): LinearOps {
  const wide = new Map<number, Float32Array>();
  const widened = (w: Matrix): Float32Array => {
    let W = wide.get(w.ptr);
    if (!W) wide.set(w.ptr, (W = widen(ref, w)));
    return W;
  };
  return {
    forward(w, x, n) {
      const W = widened(w);
      const y = vec(n * w.rows);
      for (let t = 0; t < n; t++) {
        for (let r = 0; r < w.rows; r++) {
          let s = 0;
          for (let i = 0; i < w.cols; i++) s += W[r * w.cols + i]! * x[t * w.cols + i]!;
          y[t * w.rows + r] = s;
        }
      }
      return y;
    },
    backward(w, dy, n) {
      const W = widened(w);
      const dx = vec(n * w.cols);
      for (let t = 0; t < n; t++) {
        for (let r = 0; r < w.rows; r++) {
          const g = dy[t * w.rows + r]!;
          if (g === 0) continue;
          for (let i = 0; i < w.cols; i++) dx[t * w.cols + i]! += g * W[r * w.cols + i]!;
        }
      }
      return dx;
    },
    product(a, b, n, m, k) {
      const y = vec(n * m);
      for (let t = 0; t < n; t++) {
        for (let r = 0; r < m; r++) {
          let s = 0;
          for (let i = 0; i < k; i++) s += a[t * k + i]! * b[r * k + i]!;
          y[t * m + r] = s;
        }
      }
      return y;
    },
  };
}

/** Bytes of Wᵀ (f32) that kernelLinear's backward holds in kernel memory at a time. */
const TRANSPOSED_BYTES = 64 * 2 ** 20;

/**
 * The SIMD matmul kernel (threads, stored dtype widened inside) on copies of the activations in
 * kernel memory; the backward product runs it on Wᵀ, transposed to f32 a block of its rows at a time
 * (at most `transposedBytes`: a 7B model's classifier is 500 MiB in f32) and freed after. Each output
 * is one kernel dot product over all of W's rows, and blocks of a multiple of 4 rows of Wᵀ keep every
 * row in the kernel's same 2- or 4-row tile, so the blocks do not change the arithmetic.
 */
export function kernelLinear(k: Kernels, ref: ReferenceKernels, transposedBytes = TRANSPOSED_BYTES): LinearOps {
  /** w's data must stay where it is during the call; x is copied in and the result out. */
  const matmul = (w: Matrix, x: Vec, n: number): Float32Array => {
    const a = k.arena;
    const xp = a.alloc(n * w.cols * 4);
    const yp = a.alloc(n * w.rows * 4);
    try {
      a.f32(xp, n * w.cols).set(x);
      k.matmul(yp, xp, w, n);
      return a.f32(yp, n * w.rows).slice();
    } finally {
      a.free(xp);
      a.free(yp);
    }
  };
  /** b copied into kernel memory as an f32 matrix for the duration of `use`. */
  const withMatrix = <T>(b: ArrayLike<number>, rows: number, cols: number, use: (m: Matrix) => T): T => {
    const ptr = k.arena.alloc(rows * cols * 4);
    try {
      k.arena.f32(ptr, rows * cols).set(b);
      return use({ ptr, dtype: 'f32', rows, cols });
    } finally {
      k.arena.free(ptr);
    }
  };
  return {
    forward: matmul,
    product: (a, b, n, m, kk) => withMatrix(b.subarray(0, m * kk), m, kk, (w) => matmul(w, a.subarray(0, n * kk), n)),
    backward(w, dy, n) {
      const W = widen(ref, w);
      const dx = new Float32Array(n * w.cols);
      const block = Math.min(w.cols, Math.max(4, Math.floor(transposedBytes / (16 * w.rows)) * 4));
      const t = new Float32Array(block * w.rows);
      // dx[:, c0..c1) = dy · W[:, c0..c1): rows c0..c1 of Wᵀ
      for (let c0 = 0; c0 < w.cols; c0 += block) {
        const cols = Math.min(block, w.cols - c0);
        for (let r = 0; r < w.rows; r++) for (let i = 0; i < cols; i++) t[i * w.rows + r] = W[r * w.cols + c0 + i]!;
        const part = withMatrix(t.subarray(0, cols * w.rows), cols, w.rows, (wt) => matmul(wt, dy, n));
        for (let j = 0; j < n; j++) dx.set(part.subarray(j * cols, (j + 1) * cols), j * w.cols + c0);
      }
      return dx;
    },
  };
}
