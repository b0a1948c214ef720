// Quantizing new rows into a packed store (the OP_QUANTIZE job). The scalar definition is
// src/kernels/packed/quantize.ts; this must match it byte for byte (codes and scale/zero words), so
// every step below is the same f64 arithmetic, the same f64 → f32 → f16 rounding, JS Math.round and
// the same nearest-level search, and the codes are packed as src/kernels/packed/pack.ts lays them out.

import {
  ARGS, CTRL_DONE, CTRL_NEXT, QUANTIZE_CAPACITY, QUANTIZE_FROM, QUANTIZE_HEAD0, QUANTIZE_HEAD_DIM, QUANTIZE_HEADS,
  QUANTIZE_KIND, QUANTIZE_MIDS, QUANTIZE_MIDS_LENGTH, QUANTIZE_N, QUANTIZE_SRC, QUANTIZE_STREAM, STREAM_AXIS, STREAM_BITS,
  STREAM_CODES, STREAM_GROUP, STREAM_PARAMS, STREAM_PARAMS_HEAD_STRIDE, STREAM_ROW_BYTES,
} from '../src/kernels/abi';

const F16_MAX: f64 = 65504;

// @ts-ignore: decorator
@inline function clampF16(x: f64): f64 {
  return isNaN(x) ? 0 : max(-F16_MAX, min(F16_MAX, x));
}

/** f64 → f32 (round to nearest even) → f16 bits (round to nearest even), as half.ts f32ToF16. */
function toF16Bits(x: f64): u32 {
  const bits = reinterpret<u32>(<f32>x);
  const sign = (bits >>> 16) & 0x8000;
  const exp = <i32>((bits >>> 23) & 0xff);
  let mant = bits & 0x7fffff;
  if (exp == 0xff) return sign | 0x7c00 | (mant != 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = <u32>(14 - e);
    const half = <u32>1 << (shift - 1);
    const rest = mant & ((<u32>1 << shift) - 1);
    let r = mant >>> shift;
    if (rest > half || (rest == half && (r & 1) != 0)) r++;
    return sign | r;
  }
  const rest = mant & 0x1fff;
  let r = (<u32>e << 10) | (mant >>> 13);
  if (rest > 0x1000 || (rest == 0x1000 && (r & 1) != 0)) r++;
  return sign | r;
}

/** The value of f16 bits, exactly (finite inputs only: scales and zeros are clamped before rounding). */
function f16Value(h: u32): f64 {
  const sign: f64 = (h & 0x8000) != 0 ? -1 : 1;
  const exp = <i32>((h >> 10) & 0x1f);
  const frac = <f64>(h & 0x3ff);
  if (exp == 0) return sign * frac * reinterpret<f64>(<u64>(1023 - 24) << 52);
  return sign * (1 + frac / 1024) * reinterpret<f64>(<u64>(exp - 15 + 1023) << 52);
}

/** JS Math.round: the nearest integer, halves toward +∞ (y − floor(y) is exact for y ≥ 0). */
// @ts-ignore: decorator
@inline function roundHalfUp(y: f64): f64 {
  const r = floor(y);
  return y - r >= 0.5 ? r + 1 : r;
}

function nearest(mids: usize, len: i32, y: f64): u32 {
  if (isNaN(y)) return <u32>(len >> 1);
  let lo = 0;
  let hi = len;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (y > load<f64>(mids + (<usize>mid << 3))) lo = mid + 1;
    else hi = mid;
  }
  return <u32>lo;
}

function encode(unit: bool, k: f64, mids: usize, midsLen: i32, x: f64, s: f64, z: f64): u32 {
  if (!(s > 0)) return unit ? nearest(mids, midsLen, 0) : 0;
  const y = (x - z) / s;
  if (unit) return nearest(mids, midsLen, y);
  if (isNaN(y)) return 0;
  return <u32>max(0, min(k, roundHalfUp(y)));
}

/** ORs code v of channel c into a zeroed packed row (pack.ts layout). */
function packCode(row: usize, bits: i32, c: i32, v: u32): void {
  const p = row + <usize>((c >> 6) * 8 * bits);
  const i = c & 63;
  if (bits == 8) {
    store<u8>(p + <usize>i, <u8>v);
  } else if (bits == 4) {
    const q = p + <usize>(16 * (i >> 5) + (i & 15));
    store<u8>(q, load<u8>(q) | <u8>((v & 15) << (4 * ((i >> 4) & 1))));
  } else if (bits == 2) {
    const q = p + <usize>(i & 15);
    store<u8>(q, load<u8>(q) | <u8>((v & 3) << (2 * (i >> 4))));
  } else {
    const j = i & 15;
    const k = i >> 4;
    const q = p + <usize>j;
    store<u8>(q, load<u8>(q) | <u8>((v & 3) << (2 * k)));
    if ((v & 4) != 0) {
      const hq = p + 16 + <usize>(j & 7);
      store<u8>(hq, load<u8>(hq) | <u8>(<i32>1 << (2 * k + (j >> 3))));
    }
  }
}

export function quantizeJob(ctrl: usize, thread: i32): i32 {
  const a = ctrl + <usize>ARGS;
  const n = load<i32>(a, QUANTIZE_N);
  const heads = load<i32>(a, QUANTIZE_HEADS);
  const items = n * heads;
  for (;;) {
    const it = atomic.add<i32>(ctrl + (<usize>CTRL_NEXT << 2), 1);
    if (it >= items) break;
    quantizeRow(a, it / heads, it % heads);
    atomic.add<i32>(ctrl + (<usize>CTRL_DONE << 2), 1);
  }
  return items;
}

function quantizeRow(a: usize, t: i32, j: i32): void {
  const heads = load<i32>(a, QUANTIZE_HEADS);
  const d = load<i32>(a, QUANTIZE_HEAD_DIM);
  const h = load<i32>(a, QUANTIZE_HEAD0) + j;
  const slot = load<i32>(a, QUANTIZE_FROM) + t;
  const cap = load<i32>(a, QUANTIZE_CAPACITY);
  const desc = <usize>load<u32>(a, QUANTIZE_STREAM);
  const unit = load<i32>(a, QUANTIZE_KIND) != 0;
  const mids = <usize>load<u32>(a, QUANTIZE_MIDS);
  const midsLen = load<i32>(a, QUANTIZE_MIDS_LENGTH);
  const bits = load<i32>(desc, STREAM_BITS);
  const group = load<i32>(desc, STREAM_GROUP);
  const rb = <usize>load<u32>(desc, STREAM_ROW_BYTES);
  const params = <usize>load<u32>(desc, STREAM_PARAMS) + <usize>h * <usize>load<u32>(desc, STREAM_PARAMS_HEAD_STRIDE);
  const k = <f64>((1 << bits) - 1);
  const x = <usize>load<u32>(a, QUANTIZE_SRC) + (<usize>(t * heads + j) * <usize>d << 2);
  const row = <usize>load<u32>(desc, STREAM_CODES) + (<usize>h * <usize>cap + <usize>slot) * rb;
  memory.fill(row, 0, rb);
  if (bits == 16) {
    // bfloat16, round to nearest even; NaN stays a quiet NaN (as quantize.ts toBf16)
    for (let i = 0; i < d; i++) {
      const v = load<u32>(x + (<usize>i << 2));
      const f = load<f32>(x + (<usize>i << 2));
      store<u16>(row + (<usize>i << 1), <u16>(isNaN(f) ? (v >>> 16) | 0x40 : (v + 0x7fff + ((v >>> 16) & 1)) >>> 16));
    }
    return;
  }
  if (load<i32>(desc, STREAM_AXIS) == 0) {
    // token axis: each group of channels gets the scale and zero of its min-max range
    const groups = (d + group - 1) / group;
    const words = params + (<usize>slot * <usize>groups << 2);
    for (let g = 0; g < groups; g++) {
      const end = min(d, (g + 1) * group);
      let lo: f64 = Infinity;
      let hi: f64 = -Infinity;
      for (let i = g * group; i < end; i++) {
        const v = <f64>load<f32>(x + (<usize>i << 2));
        lo = min(lo, v);
        hi = max(hi, v);
      }
      lo = clampF16(lo);
      hi = clampF16(max(lo, hi));
      const sh = toF16Bits(min(F16_MAX, unit ? (hi - lo) / 2 : (hi - lo) / k));
      const zh = toF16Bits(clampF16(unit ? (hi + lo) / 2 : lo));
      store<u32>(words + (<usize>g << 2), sh | (zh << 16));
      const s = f16Value(sh);
      const z = f16Value(zh);
      for (let i = g * group; i < end; i++) packCode(row, bits, i, encode(unit, k, mids, midsLen, <f64>load<f32>(x + (<usize>i << 2)), s, z));
    }
  } else {
    // channel axis: the words of the slot's token group, set by the codec
    const tg = group > 0 ? slot / group : 0;
    const words = params + (<usize>tg * <usize>d << 2);
    for (let i = 0; i < d; i++) {
      const w = load<u32>(words + (<usize>i << 2));
      packCode(row, bits, i, encode(unit, k, mids, midsLen, <f64>load<f32>(x + (<usize>i << 2)), f16Value(w & 0xffff), f16Value(w >>> 16)));
    }
  }
}
