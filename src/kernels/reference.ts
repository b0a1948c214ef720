import type { Kernels } from './api.js';
import type { Arena } from './arena.js';
import { BLOCK_FORMATS, dequantize, rowBytes } from './ggml/index.js';
import { bf16ToF32, f16Table, f32ToF16 } from './half.js';
import { quantAttentionReference } from './packed/reference.js';
import { quantizeReference } from './packed/quantize.js';
import type { QuantAttentionArgs, QuantizeArgs } from './packed/types.js';
import type { Rope } from './rope.js';
import type { AttentionArgs, Matrix, MatmulPart, SlotDType } from './types.js';

/**
 * Scalar TypeScript kernels: the definition every fast kernel is tested against. Plain loops,
 * f64 accumulation, no cleverness.
 */
export class ReferenceKernels implements Kernels {
  readonly backend = 'reference' as const;
  readonly simd = null;
  readonly threads = 1;

  constructor(readonly arena: Arena) {}

  /** Row r of a matrix as f32. */
  row(w: Matrix, r: number): Float32Array {
    const a = this.arena;
    const out = new Float32Array(w.cols);
    switch (w.dtype) {
      case 'f32':
        out.set(a.f32(w.ptr + r * w.cols * 4, w.cols));
        break;
      case 'f16': {
        const t = f16Table();
        const src = a.u16(w.ptr + r * w.cols * 2, w.cols);
        for (let i = 0; i < w.cols; i++) out[i] = t[src[i]!]!;
        break;
      }
      case 'bf16': {
        const src = a.u16(w.ptr + r * w.cols * 2, w.cols);
        for (let i = 0; i < w.cols; i++) out[i] = bf16ToF32(src[i]!);
        break;
      }
      default: {
        const f = BLOCK_FORMATS[w.dtype];
        const bytes = rowBytes(f, w.cols);
        out.set(dequantize(f, a.u8(w.ptr + r * bytes, bytes), 1, w.cols));
      }
    }
    return out;
  }

  matmul(out: number, x: number, w: Matrix, n: number): void {
    const xs = this.arena.f32(x, n * w.cols);
    const ys = this.arena.f32(out, n * w.rows);
    for (let r = 0; r < w.rows; r++) {
      const wr = this.row(w, r);
      for (let t = 0; t < n; t++) {
        let s = 0;
        for (let i = 0; i < w.cols; i++) s += wr[i]! * xs[t * w.cols + i]!;
        ys[t * w.rows + r] = s;
      }
    }
  }

  matmuls(x: number, parts: readonly MatmulPart[], n: number): void {
    for (const p of parts) this.matmul(p.out, x, p.w, n);
  }

  rmsnorm(out: number, x: number, weight: number, n: number, dim: number, eps: number): void {
    const xs = this.arena.f32(x, n * dim);
    const ys = this.arena.f32(out, n * dim);
    const g = this.arena.f32(weight, dim);
    for (let t = 0; t < n; t++) {
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += xs[t * dim + i]! ** 2;
      const inv = 1 / Math.sqrt(ss / dim + eps);
      for (let i = 0; i < dim; i++) ys[t * dim + i] = xs[t * dim + i]! * inv * g[i]!;
    }
  }

  rope(x: number, n: number, heads: number, positions: number, rope: Rope): void {
    const headDim = rope.headDim;
    const xs = this.arena.f32(x, n * heads * headDim);
    const pos = this.arena.i32(positions, n);
    for (let t = 0; t < n; t++) for (let h = 0; h < heads; h++) rope.rotate(xs, (t * heads + h) * headDim, pos[t]!);
  }

  softmax(x: number, len: number): void {
    const xs = this.arena.f32(x, len);
    let max = -Infinity;
    for (let i = 0; i < len; i++) max = Math.max(max, xs[i]!);
    let sum = 0;
    for (let i = 0; i < len; i++) sum += Math.exp(xs[i]! - max);
    for (let i = 0; i < len; i++) xs[i] = Math.exp(xs[i]! - max) / sum;
  }

  siluMul(out: number, gate: number, up: number, len: number): void {
    const g = this.arena.f32(gate, len);
    const u = this.arena.f32(up, len);
    const o = this.arena.f32(out, len);
    for (let i = 0; i < len; i++) o[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
  }

  add(out: number, x: number, len: number): void {
    const o = this.arena.f32(out, len);
    const xs = this.arena.f32(x, len);
    for (let i = 0; i < len; i++) o[i] = o[i]! + xs[i]!;
  }

  addBias(x: number, bias: number, n: number, dim: number): void {
    const xs = this.arena.f32(x, n * dim);
    const b = this.arena.f32(bias, dim);
    for (let t = 0; t < n; t++) for (let i = 0; i < dim; i++) xs[t * dim + i] = xs[t * dim + i]! + b[i]!;
  }

  embed(out: number, table: Matrix, ids: number, n: number): void {
    const id = this.arena.i32(ids, n);
    const o = this.arena.f32(out, n * table.cols);
    for (let t = 0; t < n; t++) o.set(this.row(table, id[t]!), t * table.cols);
  }

  ropeRows(dst: number, src: number, dtype: SlotDType, n: number, heads: number, stride: number, positions: number, rope: Rope): void {
    const d = rope.headDim;
    const bytes = dtype === 'f32' ? 4 : 2;
    for (let h = 0; h < heads; h++) {
      const at = h * stride;
      const pos = this.arena.i32(positions + at * 4, n);
      const rows = Float32Array.from(this.slots(src + at * d * bytes, dtype, n * d));
      for (let t = 0; t < n; t++) rope.rotate(rows, t * d, checkPosition(pos[t]!));
      this.arena.f32(dst + at * d * 4, n * d).set(rows);
    }
  }

  toF16(out: number, x: number, len: number): void {
    const xs = this.arena.f32(x, len);
    const o = this.arena.u16(out, len);
    for (let i = 0; i < len; i++) o[i] = f32ToF16(xs[i]!);
  }

  attention(a: AttentionArgs): void {
    const { n, numHeads, numKvHeads, headDim: d, capacity } = a;
    const group = numHeads / numKvHeads;
    const keys = this.slots(a.keys, a.keyDtype ?? a.dtype, numKvHeads * capacity * d);
    const values = this.slots(a.values, a.dtype, numKvHeads * capacity * d);
    const q = this.arena.f32(a.q, n * numHeads * d);
    const out = this.arena.f32(a.out, n * numHeads * d);
    const last = a.lastProbs ? this.arena.f32(a.lastProbs, numHeads * capacity) : undefined;
    const received = a.received ? this.arena.f32(a.received, numHeads * capacity) : undefined;
    const mask = a.mask ? this.arena.u8(a.mask, numHeads * capacity) : undefined;
    const p = new Float64Array(a.visible + n);
    for (let t = 0; t < n; t++) {
      const seen = a.visible + t;
      for (let h = 0; h < numHeads; h++) {
        const kv = Math.floor(h / group) * capacity * d;
        const qo = (t * numHeads + h) * d;
        let max = -Infinity;
        for (let s = 0; s < seen; s++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[qo + i]! * keys[kv + s * d + i]!;
          p[s] = mask?.[h * capacity + s] ? -Infinity : dot * a.scale;
          max = Math.max(max, p[s]!);
        }
        let sum = 0;
        for (let s = 0; s < seen; s++) sum += p[s] = Math.exp(p[s]! - max);
        for (let i = 0; i < d; i++) out[qo + i] = 0;
        for (let s = 0; s < seen; s++) {
          const w = p[s]! / sum;
          for (let i = 0; i < d; i++) out[qo + i] = out[qo + i]! + w * values[kv + s * d + i]!;
          if (received) received[h * capacity + s] = received[h * capacity + s]! + w;
          if (last && t === n - 1) last[h * capacity + s] = w;
        }
        if (last && t === n - 1) for (let s = seen; s < capacity; s++) last[h * capacity + s] = 0;
      }
    }
  }

  quantAttention(a: QuantAttentionArgs): void {
    quantAttentionReference(this.arena, a);
  }

  quantize(a: QuantizeArgs): void {
    quantizeReference(this.arena, a);
  }

  xorWords(src: number, bytes: number): number {
    checkReadSize(bytes);
    let x = 0;
    for (const w of this.arena.i32(src, bytes / 4)) x ^= w;
    return x >>> 0;
  }

  async close(): Promise<void> {}

  private slots(ptr: number, dtype: 'f32' | 'f16', len: number): Float32Array {
    if (dtype === 'f32') return this.arena.f32(ptr, len);
    const t = f16Table();
    const src = this.arena.u16(ptr, len);
    const out = new Float32Array(len);
    for (let i = 0; i < len; i++) out[i] = t[src[i]!]!;
    return out;
  }
}

/** ropeRows turns rows to positions at or above 0 (its tables start there). */
export function checkPosition(p: number): number {
  if (!(Number.isInteger(p) && p >= 0)) throw new RangeError(`ropeRows: position ${p} is not an integer ≥ 0`);
  return p;
}

/** xorWords reads whole 64-byte steps. */
export function checkReadSize(bytes: number): void {
  if (!Number.isInteger(bytes) || bytes < 0 || bytes % 64 !== 0) throw new RangeError(`xorWords: ${bytes} bytes is not a multiple of 64`);
}
