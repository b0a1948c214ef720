// Elementwise kernels the forward pass calls on the calling thread: SwiGLU, residual adds, RMSNorm,
// RoPE, the vocabulary softmax.

import { exp4 } from './simd';

export function siluMul(out: usize, gate: usize, up: usize, len: i32): void {
  const one = f32x4.splat(1.0);
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    const o = <usize>i << 2;
    const g = v128.load(gate + o);
    const e = exp4(f32x4.neg(g));
    v128.store(out + o, f32x4.mul(f32x4.div(g, f32x4.add(one, e)), v128.load(up + o)));
  }
  for (; i < len; i++) {
    const o = <usize>i << 2;
    const g = load<f32>(gate + o);
    const e = f32x4.extract_lane(exp4(f32x4.splat(-g)), 0);
    store<f32>(out + o, (g / (1 + e)) * load<f32>(up + o));
  }
}

export function add(out: usize, x: usize, len: i32): void {
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(out + o), v128.load(x + o)));
  }
  for (; i < len; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(out + o) + load<f32>(x + o));
  }
}

export function addBias(x: usize, bias: usize, n: i32, dim: i32): void {
  for (let t = 0; t < n; t++) add(x + <usize>t * (<usize>dim << 2), bias, dim);
}

export function rmsnorm(out: usize, x: usize, weight: usize, n: i32, dim: i32, eps: f64): void {
  for (let t = 0; t < n; t++) {
    const xr = x + <usize>t * (<usize>dim << 2);
    const or = out + <usize>t * (<usize>dim << 2);
    // sum of squares in f64, like the reference
    let s0 = f64x2.splat(0), s1 = s0;
    let i = 0;
    for (; i + 4 <= dim; i += 4) {
      const v = v128.load(xr + (<usize>i << 2));
      const lo = f64x2.promote_low_f32x4(v);
      const hi = f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1));
      s0 = f64x2.add(s0, f64x2.mul(lo, lo));
      s1 = f64x2.add(s1, f64x2.mul(hi, hi));
    }
    const s = f64x2.add(s0, s1);
    let ss = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
    for (let j = i; j < dim; j++) {
      const v = <f64>load<f32>(xr + (<usize>j << 2));
      ss += v * v;
    }
    const inv = 1 / Math.sqrt(ss / dim + eps);
    const iv = f64x2.splat(inv);
    i = 0;
    for (; i + 4 <= dim; i += 4) {
      const o = <usize>i << 2;
      const v = v128.load(xr + o);
      const g = v128.load(weight + o);
      const lo = f64x2.mul(f64x2.mul(f64x2.promote_low_f32x4(v), iv), f64x2.promote_low_f32x4(g));
      const hi = f64x2.mul(
        f64x2.mul(f64x2.promote_low_f32x4(v128.shuffle<f32>(v, v, 2, 3, 0, 1)), iv),
        f64x2.promote_low_f32x4(v128.shuffle<f32>(g, g, 2, 3, 0, 1)),
      );
      v128.store(or + o, v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5));
    }
    for (; i < dim; i++) {
      const o = <usize>i << 2;
      store<f32>(or + o, <f32>(<f64>load<f32>(xr + o) * inv * <f64>load<f32>(weight + o)));
    }
  }
}

/**
 * RoPE with a precomputed table of (cos, sin) f64 pairs, [n][headDim/2], built in JS with the
 * reference's exact expression; the rotation itself is done in f64 like the reference.
 */
export function rope(x: usize, n: i32, heads: i32, headDim: i32, table: usize, interleaved: i32): void {
  const half = headDim >> 1;
  for (let t = 0; t < n; t++) {
    const tb = table + <usize>t * (<usize>half << 4);
    for (let h = 0; h < heads; h++) {
      const base = x + (<usize>(t * heads + h) * <usize>headDim << 2);
      if (interleaved) {
        for (let i = 0; i < half; i++) {
          const cs = v128.load(tb + (<usize>i << 4)); // [cos, sin]
          const p = base + (<usize>i << 3);
          const v = f64x2.promote_low_f32x4(v128.load64_zero(p)); // [x0, x1]
          // [x0*c - x1*s, x0*s + x1*c]
          const a = f64x2.mul(f64x2.splat(f64x2.extract_lane(v, 0)), cs); // [x0 c, x0 s]
          const b = f64x2.mul(f64x2.splat(f64x2.extract_lane(v, 1)), cs); // [x1 c, x1 s]
          const r0 = f64x2.extract_lane(a, 0) - f64x2.extract_lane(b, 1);
          const r1 = f64x2.extract_lane(a, 1) + f64x2.extract_lane(b, 0);
          store<f32>(p, <f32>r0);
          store<f32>(p, <f32>r1, 4);
        }
      } else {
        for (let i = 0; i < half; i++) {
          const c = load<f64>(tb + (<usize>i << 4));
          const s = load<f64>(tb + (<usize>i << 4), 8);
          const pa = base + (<usize>i << 2);
          const pb = pa + (<usize>half << 2);
          const x0 = <f64>load<f32>(pa);
          const x1 = <f64>load<f32>(pb);
          store<f32>(pa, <f32>(x0 * c - x1 * s));
          store<f32>(pb, <f32>(x0 * s + x1 * c));
        }
      }
    }
  }
}

export function softmax(x: usize, len: i32): void {
  if (len <= 0) return;
  let mv = f32x4.splat(-Infinity);
  let i = 0;
  for (; i + 4 <= len; i += 4) mv = f32x4.max(mv, v128.load(x + (<usize>i << 2)));
  let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
  for (; i < len; i++) m = max(m, load<f32>(x + (<usize>i << 2)));
  // f64 exp and sum: softmax runs once per token over the vocabulary, so precision wins over speed
  const mx = <f64>m;
  let sum: f64 = 0;
  for (i = 0; i < len; i++) {
    const p = x + (<usize>i << 2);
    const e = Math.exp(<f64>load<f32>(p) - mx);
    sum += e;
    store<f32>(p, <f32>e);
  }
  const inv = 1 / sum;
  for (i = 0; i < len; i++) {
    const p = x + (<usize>i << 2);
    store<f32>(p, <f32>(<f64>load<f32>(p) * inv));
  }
}
