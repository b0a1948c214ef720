// OP_ROPE_ROWS: keys kept before RoPE (streaming caches), rotated into an f32 copy at the positions the
// cache gives. The arithmetic is rope's (elementwise.ts): widen exactly, rotate in f64, round to f32;
// four pairs at a time in registers.

import {
  ARGS, CTRL_DONE, CTRL_NEXT, ROPE_CHUNK_ROWS, ROPE_DST, ROPE_F16, ROPE_HEAD_DIM, ROPE_INTERLEAVED, ROPE_N, ROPE_POSITIONS,
  ROPE_SRC, ROPE_TABLE, ROPE_HEADS, ROPE_STRIDE,
} from '../src/kernels/abi';
import { h2f, h2fScalar } from './half';

/** x0·c − x1·s for 4 pairs in f64 (c, s: two f64x2 each), rounded to f32. */
// @ts-ignore: decorator
@inline function turnA(x0: v128, x1: v128, c0: v128, c1: v128, s0: v128, s1: v128): v128 {
  const lo = f64x2.sub(f64x2.mul(f64x2.promote_low_f32x4(x0), c0), f64x2.mul(f64x2.promote_low_f32x4(x1), s0));
  const hi = f64x2.sub(f64x2.mul(f64x2.promote_low_f32x4(v128.shuffle<f32>(x0, x0, 2, 3, 0, 1)), c1),
    f64x2.mul(f64x2.promote_low_f32x4(v128.shuffle<f32>(x1, x1, 2, 3, 0, 1)), s1));
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5);
}

/** x0·s + x1·c for 4 pairs in f64, rounded to f32. */
// @ts-ignore: decorator
@inline function turnB(x0: v128, x1: v128, c0: v128, c1: v128, s0: v128, s1: v128): v128 {
  const lo = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(x0), s0), f64x2.mul(f64x2.promote_low_f32x4(x1), c0));
  const hi = f64x2.add(f64x2.mul(f64x2.promote_low_f32x4(v128.shuffle<f32>(x0, x0, 2, 3, 0, 1)), s1),
    f64x2.mul(f64x2.promote_low_f32x4(v128.shuffle<f32>(x1, x1, 2, 3, 0, 1)), c1));
  return v128.shuffle<f32>(f32x4.demote_f64x2_zero(lo), f32x4.demote_f64x2_zero(hi), 0, 1, 4, 5);
}

// @ts-ignore: decorator
@inline function loadNum(p: usize, k: i32, f16: bool): f32 {
  return f16 ? h2fScalar(load<u16>(p + (<usize>k << 1))) : load<f32>(p + (<usize>k << 2));
}

/** One row: src (f16 or f32) → dst (f32) turned by the table row at tc (cosines) / ts (sines). */
// @ts-ignore: decorator
@inline function turnRow(dst: usize, src: usize, half: i32, tc: usize, ts: usize, f16: bool, interleaved: bool): void {
  let j = 0;
  if (interleaved) {
    // 4 pairs (2j, 2j+1) per step: de-interleaved, turned, interleaved back
    for (; j + 4 <= half; j += 4) {
      let a: v128, b: v128;
      if (f16) {
        const v = v128.load(src + (<usize>j << 2));
        a = h2f(i32x4.extend_low_i16x8_u(v));
        b = h2f(i32x4.extend_high_i16x8_u(v));
      } else {
        a = v128.load(src + (<usize>j << 3));
        b = v128.load(src + (<usize>j << 3), 16);
      }
      const x0 = v128.shuffle<f32>(a, b, 0, 2, 4, 6), x1 = v128.shuffle<f32>(a, b, 1, 3, 5, 7);
      const t = <usize>j << 3;
      const c0 = v128.load(tc + t), c1 = v128.load(tc + t, 16), s0 = v128.load(ts + t), s1 = v128.load(ts + t, 16);
      const r0 = turnA(x0, x1, c0, c1, s0, s1), r1 = turnB(x0, x1, c0, c1, s0, s1);
      v128.store(dst + (<usize>j << 3), v128.shuffle<f32>(r0, r1, 0, 4, 1, 5));
      v128.store(dst + (<usize>j << 3), v128.shuffle<f32>(r0, r1, 2, 6, 3, 7), 16);
    }
  } else {
    // 4 pairs (j, j + half) per step
    for (; j + 4 <= half; j += 4) {
      let x0: v128, x1: v128;
      if (f16) {
        x0 = h2f(i32x4.extend_low_i16x8_u(v128.load64_zero(src + (<usize>j << 1))));
        x1 = h2f(i32x4.extend_low_i16x8_u(v128.load64_zero(src + (<usize>(j + half) << 1))));
      } else {
        x0 = v128.load(src + (<usize>j << 2));
        x1 = v128.load(src + (<usize>(j + half) << 2));
      }
      const t = <usize>j << 3;
      const c0 = v128.load(tc + t), c1 = v128.load(tc + t, 16), s0 = v128.load(ts + t), s1 = v128.load(ts + t, 16);
      v128.store(dst + (<usize>j << 2), turnA(x0, x1, c0, c1, s0, s1));
      v128.store(dst + (<usize>(j + half) << 2), turnB(x0, x1, c0, c1, s0, s1));
    }
  }
  for (; j < half; j++) {
    const ia = interleaved ? 2 * j : j;
    const ib = interleaved ? 2 * j + 1 : j + half;
    const x0 = <f64>loadNum(src, ia, f16), x1 = <f64>loadNum(src, ib, f16);
    const c = load<f64>(tc + (<usize>j << 3)), s = load<f64>(ts + (<usize>j << 3));
    store<f32>(dst + (<usize>ia << 2), <f32>(x0 * c - x1 * s));
    store<f32>(dst + (<usize>ib << 2), <f32>(x0 * s + x1 * c));
  }
}

/** Work items are ROPE_CHUNK_ROWS rows of one head each. */
export function ropeRowsJob(ctrl: usize): i32 {
  const a = ctrl + <usize>ARGS;
  const dst = <usize>load<u32>(a, ROPE_DST);
  const src = <usize>load<u32>(a, ROPE_SRC);
  const positions = <usize>load<u32>(a, ROPE_POSITIONS);
  const table = <usize>load<u32>(a, ROPE_TABLE);
  const n = load<i32>(a, ROPE_N);
  const headDim = load<i32>(a, ROPE_HEAD_DIM);
  const f16 = load<i32>(a, ROPE_F16) != 0;
  const interleaved = load<i32>(a, ROPE_INTERLEAVED) != 0;
  const half = headDim >> 1;
  const rb = <usize>headDim << (f16 ? 1 : 2);
  const ob = <usize>headDim << 2;
  const tr = <usize>half << 4;
  const stride = load<i32>(a, ROPE_STRIDE);
  const perHead = (n + ROPE_CHUNK_ROWS - 1) / ROPE_CHUNK_ROWS;
  const items = load<i32>(a, ROPE_HEADS) * perHead;
  for (;;) {
    const it = atomic.add<i32>(ctrl + (<usize>CTRL_NEXT << 2), 1);
    if (it >= items) break;
    const head = it / perHead;
    const t0 = (it % perHead) * ROPE_CHUNK_ROWS;
    const end = head * stride + min(n, t0 + ROPE_CHUNK_ROWS);
    for (let t = head * stride + t0; t < end; t++) {
      const tc = table + <usize>load<i32>(positions + (<usize>t << 2)) * tr;
      const o = dst + <usize>t * ob, s = src + <usize>t * rb;
      // the four variants, each with its flags constant
      if (f16) {
        if (interleaved) turnRow(o, s, half, tc, tc + (<usize>half << 3), true, true);
        else turnRow(o, s, half, tc, tc + (<usize>half << 3), true, false);
      } else {
        if (interleaved) turnRow(o, s, half, tc, tc + (<usize>half << 3), false, true);
        else turnRow(o, s, half, tc, tc + (<usize>half << 3), false, false);
      }
    }
    atomic.add<i32>(ctrl + (<usize>CTRL_DONE << 2), 1);
  }
  return items;
}
