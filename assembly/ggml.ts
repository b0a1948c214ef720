// GGML block formats (llama.cpp's quantized weights) read straight from their blocks.
// Every format is decoded one block at a time into signed 8-bit codes and, per group of 16 values, a
// scale d and an offset m (value = d·code + m), in SIMD; the dot product with the activations then
// runs on the codes. Two ways, measured against each other (docs/gguf.md): in f32 (codes widened in
// registers and multiplied by f32 activations) or in integers (activations quantized to 8 bits per 32,
// as llama.cpp does, and i16 dot products). The scalar definition is src/kernels/ggml/.

import {
  BLOCK_SCRATCH, DT_INT_DOT, DT_IQ4_NL, DT_IQ4_XS, DT_Q2_K, DT_Q3_K, DT_Q4_0, DT_Q4_1, DT_Q4_K, DT_Q5_0, DT_Q5_1, DT_Q5_K, DT_Q6_K, DT_Q8_0,
} from '../src/kernels/abi';
import { h2fScalar } from './half';
import { CODE_BYTES, dotCodes16Scaled, dotCodes32, dotCodes32Scaled, dotCodesS, hsum } from './simd';

// @ts-ignore: decorator
@inline export function isBlockType(dt: i32): bool {
  return (dt & ~DT_INT_DOT) >= DT_Q4_0 || dt == (DT_Q8_0 | DT_INT_DOT);
}

/** Values per block. */
// @ts-ignore: decorator
@inline function blockValues(dt: i32): i32 {
  return dt <= DT_Q5_1 || dt == DT_IQ4_NL ? 32 : 256;
}

function blockBytes(dt: i32): usize {
  switch (dt) {
    case DT_Q8_0: return 34;
    case DT_Q4_0: return 18;
    case DT_Q4_1: return 20;
    case DT_Q5_0: return 22;
    case DT_Q5_1: return 24;
    case DT_Q2_K: return 84;
    case DT_Q3_K: return 110;
    case DT_Q4_K: return 144;
    case DT_Q5_K: return 176;
    case DT_Q6_K: return 210;
    case DT_IQ4_NL: return 18;
    default: return 136; // IQ4_XS
  }
}

export function blockRowBytes(dt: i32, cols: i32): usize {
  dt &= ~DT_INT_DOT;
  return <usize>(cols / blockValues(dt)) * blockBytes(dt);
}

/** The little-endian IEEE half at p, as f32. */
// @ts-ignore: decorator
@inline function half(p: usize): f32 {
  return h2fScalar(load<u16>(p));
}

// ================================================================ block decoders
// Each writes blockValues codes (i8) at `codes` and blockValues/16 (d, m) f32 pairs at `groups`.

// @ts-ignore: decorator
@inline function group(groups: usize, g: i32, d: f32, m: f32): void {
  store<f32>(groups + (<usize>g << 3), d);
  store<f32>(groups + (<usize>g << 3), m, 4);
}

/** 16 lanes of 0x10 where bit j of the 16 bits `bits` is set (lane j), else 0: Q5 fifth bits. */
// @ts-ignore: decorator
@inline function fifthBits(bits: u32): v128 {
  const spread = i8x16.swizzle(i16x8.splat(<i16>bits), i8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1));
  const masks = i8x16(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128);
  return v128.and(i8x16.eq(v128.and(spread, masks), masks), i8x16.splat(0x10));
}

/** The high nibble of each byte. x86 has no 8-bit shifts, so shift 16-bit lanes and mask what crossed over. */
// @ts-ignore: decorator
@inline function highNibbles(v: v128): v128 {
  return v128.and(i16x8.shr_u(v, 4), i8x16.splat(15));
}

/** ggml's kvalues_iq4nl: the 16 levels IQ4 codes index. */
// @ts-ignore: decorator
@inline function iq4Levels(): v128 {
  return i8x16(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
}

/** Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL: one block of 32 (low nibbles values 0..15, high nibbles 16..31). */
function decodeLegacy(dt: i32, p: usize, codes: usize, groups: usize): void {
  const d = half(p);
  const nib = i8x16.splat(15);
  if (dt == DT_Q4_0 || dt == DT_IQ4_NL) {
    const q = v128.load(p, 2);
    let lo = v128.and(q, nib);
    let hi = highNibbles(q);
    if (dt == DT_Q4_0) {
      lo = i8x16.sub(lo, i8x16.splat(8));
      hi = i8x16.sub(hi, i8x16.splat(8));
    } else {
      lo = i8x16.swizzle(iq4Levels(), lo);
      hi = i8x16.swizzle(iq4Levels(), hi);
    }
    v128.store(codes, lo);
    v128.store(codes, hi, 16);
    group(groups, 0, d, 0);
    group(groups, 1, d, 0);
    return;
  }
  if (dt == DT_Q4_1) {
    const m = half(p + 2);
    const q = v128.load(p, 4);
    v128.store(codes, v128.and(q, nib));
    v128.store(codes, highNibbles(q), 16);
    group(groups, 0, d, m);
    group(groups, 1, d, m);
    return;
  }
  // Q5_0 (d, qh, qs; codes - 16) and Q5_1 (d, m, qh, qs)
  const off: usize = dt == DT_Q5_0 ? 2 : 4;
  const qh = load<u32>(p + off);
  const q = v128.load(p + off + 4);
  let lo = v128.or(v128.and(q, nib), fifthBits(qh & 0xffff));
  let hi = v128.or(highNibbles(q), fifthBits(qh >> 16));
  let m: f32 = 0;
  if (dt == DT_Q5_0) {
    lo = i8x16.sub(lo, i8x16.splat(16));
    hi = i8x16.sub(hi, i8x16.splat(16));
  } else {
    m = half(p + 2);
  }
  v128.store(codes, lo);
  v128.store(codes, hi, 16);
  group(groups, 0, d, m);
  group(groups, 1, d, m);
}

/** Q2_K: 16 groups of 16 two-bit codes; group scale/min nibbles times d/dmin. */
function decodeQ2K(p: usize, codes: usize, groups: usize): void {
  const d = half(p + 80);
  const dmin = half(p + 82);
  const three = i8x16.splat(3);
  let g = 0;
  for (let h: usize = 0; h < 2; h++) {
    const q0 = v128.load(p + 16 + h * 32);
    const q1 = v128.load(p + 16 + h * 32, 16);
    for (let shift = 0; shift < 8; shift += 2) {
      v128.store(codes + (<usize>g << 4), v128.and(i16x8.shr_u(q0, shift), three));
      v128.store(codes + (<usize>(g + 1) << 4), v128.and(i16x8.shr_u(q1, shift), three));
      for (let part = 0; part < 2; part++) {
        const sc = <i32>load<u8>(p + <usize>g);
        group(groups, g, d * <f32>(sc & 15), -dmin * <f32>(sc >> 4));
        g++;
      }
    }
  }
}

/** Q3_K's 6-bit scale of group j (see src/kernels/ggml/kquants.ts). */
// @ts-ignore: decorator
@inline function scale3(s: usize, j: i32): i32 {
  const low = (<i32>load<u8>(s + <usize>(j & 7)) >> (4 * (j >> 3))) & 15;
  const high = (<i32>load<u8>(s + 8 + <usize>(j & 3)) >> (2 * (j >> 2))) & 3;
  return low | (high << 4);
}

/** Q3_K: 16 groups of 16; 2 low bits from qs, the third from hmask (clear means -4). */
function decodeQ3K(p: usize, codes: usize, groups: usize): void {
  const d = half(p + 108);
  const three = i8x16.splat(3);
  const four = i8x16.splat(4);
  const h0 = v128.load(p);
  const h1 = v128.load(p, 16);
  let g = 0;
  let bit = 1;
  for (let h: usize = 0; h < 2; h++) {
    const q0 = v128.load(p + 32 + h * 32);
    const q1 = v128.load(p + 32 + h * 32, 16);
    for (let shift = 0; shift < 8; shift += 2) {
      const mask = i8x16.splat(<i8>bit);
      const c0 = i8x16.sub(v128.and(i16x8.shr_u(q0, shift), three), v128.andnot(four, i8x16.eq(v128.and(h0, mask), mask)));
      const c1 = i8x16.sub(v128.and(i16x8.shr_u(q1, shift), three), v128.andnot(four, i8x16.eq(v128.and(h1, mask), mask)));
      v128.store(codes + (<usize>g << 4), c0);
      v128.store(codes + (<usize>(g + 1) << 4), c1);
      group(groups, g, d * <f32>(scale3(p + 96, g) - 32), 0);
      group(groups, g + 1, d * <f32>(scale3(p + 96, g + 1) - 32), 0);
      g += 2;
      bit <<= 1;
    }
  }
}

/** Q4_K / Q5_K's 6-bit scale (low 16 bits of the result) and min (high 16) of sub-block j. */
// @ts-ignore: decorator
@inline function scaleMin4(s: usize, j: i32): i32 {
  if (j < 4) return (<i32>load<u8>(s + <usize>j) & 63) | ((<i32>load<u8>(s + <usize>j + 4) & 63) << 16);
  const sc = (<i32>load<u8>(s + <usize>j + 4) & 15) | ((<i32>load<u8>(s + <usize>j - 4) >> 6) << 4);
  const mn = (<i32>load<u8>(s + <usize>j + 4) >> 4) | ((<i32>load<u8>(s + <usize>j) >> 6) << 4);
  return sc | (mn << 16);
}

/** Q4_K (fifth = false) and Q5_K: 8 sub-blocks of 32 (low nibbles of 32 bytes, then their high nibbles). */
function decodeQ45K(p: usize, codes: usize, groups: usize, fifth: bool): void {
  const d = half(p);
  const dmin = half(p + 2);
  const nib = i8x16.splat(15);
  const qs = p + (fifth ? 48 : 16);
  for (let j = 0; j < 4; j++) {
    const q0 = v128.load(qs + (<usize>j << 5));
    const q1 = v128.load(qs + (<usize>j << 5), 16);
    let c0 = v128.and(q0, nib), c1 = v128.and(q1, nib);
    let c2 = highNibbles(q0), c3 = highNibbles(q1);
    if (fifth) {
      const h0 = v128.load(p + 16), h1 = v128.load(p + 32);
      const lowShift: i32 = 1 << (2 * j), highShift: i32 = 2 << (2 * j);
      const lowBit = i8x16.splat(<i8>lowShift), highBit = i8x16.splat(<i8>highShift);
      const sixteen = i8x16.splat(16);
      c0 = v128.or(c0, v128.and(i8x16.eq(v128.and(h0, lowBit), lowBit), sixteen));
      c1 = v128.or(c1, v128.and(i8x16.eq(v128.and(h1, lowBit), lowBit), sixteen));
      c2 = v128.or(c2, v128.and(i8x16.eq(v128.and(h0, highBit), highBit), sixteen));
      c3 = v128.or(c3, v128.and(i8x16.eq(v128.and(h1, highBit), highBit), sixteen));
    }
    const o = codes + (<usize>j << 6);
    v128.store(o, c0);
    v128.store(o, c1, 16);
    v128.store(o, c2, 32);
    v128.store(o, c3, 48);
    const a = scaleMin4(p + 4, 2 * j);
    const b = scaleMin4(p + 4, 2 * j + 1);
    const d1 = d * <f32>(a & 0xffff), m1 = -dmin * <f32>(a >> 16);
    const d2 = d * <f32>(b & 0xffff), m2 = -dmin * <f32>(b >> 16);
    group(groups, 4 * j, d1, m1);
    group(groups, 4 * j + 1, d1, m1);
    group(groups, 4 * j + 2, d2, m2);
    group(groups, 4 * j + 3, d2, m2);
  }
}

/** Q6_K: 16 groups of 16; low nibbles from ql, 2 high bits from qh, code - 32, int8 group scales. */
function decodeQ6K(p: usize, codes: usize, groups: usize): void {
  const d = half(p + 208);
  const nib = i8x16.splat(15);
  const three = i8x16.splat(3);
  const off = i8x16.splat(32);
  for (let h: usize = 0; h < 2; h++) {
    const ql = p + h * 64;
    const qh = p + 128 + h * 32;
    const sc = p + 192 + h * 8;
    for (let c: usize = 0; c < 2; c++) {
      const a = v128.load(ql + c * 16);
      const b = v128.load(ql + 32 + c * 16);
      const hb = v128.load(qh + c * 16);
      const o = codes + h * 128 + c * 16;
      v128.store(o, i8x16.sub(v128.or(v128.and(a, nib), i16x8.shl(v128.and(hb, three), 4)), off));
      v128.store(o, i8x16.sub(v128.or(v128.and(b, nib), i16x8.shl(v128.and(i16x8.shr_u(hb, 2), three), 4)), off), 32);
      v128.store(o, i8x16.sub(v128.or(highNibbles(a), i16x8.shl(v128.and(i16x8.shr_u(hb, 4), three), 4)), off), 64);
      v128.store(o, i8x16.sub(v128.or(highNibbles(b), i16x8.shl(v128.and(i16x8.shr_u(hb, 6), three), 4)), off), 96);
      for (let k: usize = 0; k < 4; k++) {
        group(groups, <i32>(h * 8 + 2 * k + c), d * <f32>load<i8>(sc + c + 2 * k), 0);
      }
    }
  }
}

/** IQ4_XS: 8 sub-blocks of 32 level indices with 6-bit scales (low nibbles + 2 high bits). */
function decodeIQ4XS(p: usize, codes: usize, groups: usize): void {
  const d = half(p);
  const high = <i32>load<u16>(p + 2);
  const nib = i8x16.splat(15);
  for (let i = 0; i < 8; i++) {
    const ls = ((<i32>load<u8>(p + 4 + <usize>(i >> 1)) >> (4 * (i & 1))) & 15) | (((high >> (2 * i)) & 3) << 4);
    const dl = d * <f32>(ls - 32);
    const q = v128.load(p + 8 + (<usize>i << 4));
    v128.store(codes + (<usize>i << 5), i8x16.swizzle(iq4Levels(), v128.and(q, nib)));
    v128.store(codes + (<usize>i << 5), i8x16.swizzle(iq4Levels(), highNibbles(q)), 16);
    group(groups, 2 * i, dl, 0);
    group(groups, 2 * i + 1, dl, 0);
  }
}

function decodeBlock(dt: i32, p: usize, codes: usize, groups: usize): void {
  if (dt == DT_Q2_K) decodeQ2K(p, codes, groups);
  else if (dt == DT_Q3_K) decodeQ3K(p, codes, groups);
  else if (dt == DT_Q4_K) decodeQ45K(p, codes, groups, false);
  else if (dt == DT_Q5_K) decodeQ45K(p, codes, groups, true);
  else if (dt == DT_Q6_K) decodeQ6K(p, codes, groups);
  else if (dt == DT_IQ4_XS) decodeIQ4XS(p, codes, groups);
  else decodeLegacy(dt, p, codes, groups);
}


// ================================================================ rows

/** dst[cols] (f32) = a stored row of block type dt; `scratch` holds BLOCK_SCRATCH bytes. */
export function dequantizeBlockRow(dst: usize, src: usize, dt: i32, cols: i32, scratch: usize): void {
  dt &= ~DT_INT_DOT;
  const bv = blockValues(dt);
  const bb = blockBytes(dt);
  const codes = scratch, groups = scratch + 256;
  for (let b = 0; b < cols / bv; b++) {
    decodeBlock(dt, src + <usize>b * bb, codes, groups);
    for (let g = 0; g < bv >> 4; g++) {
      const c = v128.load(codes + (<usize>g << 4));
      const d = f32x4.splat(load<f32>(groups + (<usize>g << 3)));
      const m = f32x4.splat(load<f32>(groups + (<usize>g << 3), 4));
      const lo = i16x8.extend_low_i8x16_s(c), hi = i16x8.extend_high_i8x16_s(c);
      const o = dst + (<usize>(b * bv + (g << 4)) << 2);
      v128.store(o, f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), d), m));
      v128.store(o, f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), d), m), 16);
      v128.store(o, f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), d), m), 32);
      v128.store(o, f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), d), m), 48);
    }
  }
}

/**
 * What every row's dot product needs from the activations x[cols], computed once per matvec at `prep`:
 * f32 sums of each 16 values [cols/16] (the f32 way's offsets m), then the 8-bit activations: per `span`
 * values (32 for the 32-value formats, 256 for the K-quants, as llama.cpp's Q8_0 and Q8_K) an f32
 * scale max|x| / 127 [cols/32 slots], the i32 sums of each 16 codes [cols/16] (Q8_K's bsums, for the
 * formats whose codes are stored with an offset), the codes round(x / scale) [cols], CODE_BYTES each,
 * and the i16 sums of each 32 codes [cols/32] (the K-quants' mins meet them in one i16 dot product).
 */
export function prepareActivations(prep: usize, x: usize, cols: i32, span: i32): void {
  const sums = prep;
  const scales = sums + (<usize>(cols >> 4) << 2);
  const isums = scales + (<usize>(cols >> 5) << 2);
  const q = isums + (<usize>(cols >> 4) << 2);
  for (let g = 0; g < cols >> 4; g++) {
    const xg = x + (<usize>g << 6);
    const s = f32x4.add(f32x4.add(v128.load(xg), v128.load(xg, 16)), f32x4.add(v128.load(xg, 32), v128.load(xg, 48)));
    const t = f32x4.add(s, v128.shuffle<f32>(s, s, 2, 3, 0, 1));
    store<f32>(sums + (<usize>g << 2), f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1));
  }
  const vectors = <usize>(span >> 2);
  for (let b = 0; b < cols / span; b++) {
    const xb = x + (<usize>(b * span) << 2);
    let amax = f32x4.splat(0);
    for (let k: usize = 0; k < vectors; k++) amax = f32x4.max(amax, f32x4.abs(v128.load(xb + (k << 4))));
    amax = f32x4.max(amax, v128.shuffle<f32>(amax, amax, 2, 3, 0, 1));
    const mx = max(f32x4.extract_lane(amax, 0), f32x4.extract_lane(amax, 1));
    const scale: f32 = mx / 127;
    store<f32>(scales + (<usize>b << 2), scale);
    const inv = f32x4.splat(scale > 0 ? 1 / scale : 0);
    for (let k: usize = 0; k < vectors; k += 4) {
      const v = <usize>(b * span) + (k << 2); // index of the 16 values' first in the row
      const xv = xb + (k << 4);
      const c0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xv), inv)));
      const c1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xv, 16), inv)));
      const c2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xv, 32), inv)));
      const c3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(xv, 48), inv)));
      const sum = i32x4.add(i32x4.add(c0, c1), i32x4.add(c2, c3));
      store<i32>(isums + ((v >> 4) << 2), i32x4.extract_lane(sum, 0) + i32x4.extract_lane(sum, 1) + i32x4.extract_lane(sum, 2) + i32x4.extract_lane(sum, 3));
      const lo = i16x8.narrow_i32x4_s(c0, c1), hi = i16x8.narrow_i32x4_s(c2, c3);
      const at = q + v * <usize>CODE_BYTES;
      if (ASC_FEATURE_RELAXED_SIMD) {
        v128.store(at, i8x16.narrow_i16x8_s(lo, hi));
      } else {
        v128.store(at, lo);
        v128.store(at, hi, 16);
      }
    }
  }
  // |sum of 32 codes| ≤ 32·127 fits i16
  const spanSums = q + <usize>cols * <usize>CODE_BYTES;
  for (let j = 0; j < cols >> 5; j++) {
    store<i16>(spanSums + (<usize>j << 1), <i16>(load<i32>(isums + (<usize>j << 3)) + load<i32>(isums + (<usize>j << 3), 4)));
  }
}

/** Bytes prepareActivations writes for `cols` values. */
export function preparedBytes(cols: i32): usize {
  return (<usize>(cols >> 4) << 3) + (<usize>(cols >> 5) << 2) + <usize>cols * <usize>CODE_BYTES + (<usize>(cols >> 5) << 1);
}

/** `v` with `k` added to its first lane. */
// @ts-ignore: decorator
@inline function addToLane0(v: v128, k: i32): v128 {
  return i32x4.add(v, i32x4.replace_lane(i32x4.splat(0), 0, k));
}

// The prepared activations of one token (prepareActivations' layout), from its first byte tp.

/** The f32 scale of span i (of `span` values) of the token's activations. */
// @ts-ignore: decorator
@inline function actScale(tp: usize, cols: i32, i: i32): f32 {
  return load<f32>(tp + (<usize>(cols >> 4) << 2) + (<usize>i << 2));
}

/** The token's i32 sums of each 16 activation codes. */
// @ts-ignore: decorator
@inline function actSums(tp: usize, cols: i32): usize {
  return tp + (<usize>(cols >> 4) << 2) + (<usize>(cols >> 5) << 2);
}

/** The token's activation codes (CODE_BYTES each). */
// @ts-ignore: decorator
@inline function actCodes(tp: usize, cols: i32): usize {
  return actSums(tp, cols) + (<usize>(cols >> 4) << 2);
}

/** The token's i16 sums of each 32 activation codes. */
// @ts-ignore: decorator
@inline function actSpanSums(tp: usize, cols: i32): usize {
  return actCodes(tp, cols) + <usize>cols * <usize>CODE_BYTES;
}

/** Bytes from one token's prepared activations to the next's in a multi-token job (16-aligned). */
export function preparedStride(cols: i32): usize {
  return (preparedBytes(cols) + 15) & ~15;
}

/** A 32-value format's codes c0, c1 (values 0..15 and 16..31) · one token's activation codes at x:
 *  the span's integer dot product, in 4 lanes (signed codes: Q8_0, IQ4_NL). */
// @ts-ignore: decorator
@inline function legacyDot(dt: i32, c0: v128, c1: v128, x: usize): v128 {
  if (dt == DT_Q8_0 || dt == DT_IQ4_NL) return dotCodesS(c1, x + 16 * CODE_BYTES, dotCodesS(c0, x, i32x4.splat(0)));
  return dotCodes32(c0, c1, x, i32x4.splat(0));
}

/** A 32-value format's codes of values 0..15 (hi false) or 16..31 of the block at p: unsigned, but
 *  Q8_0's and IQ4_NL's signed. */
// @ts-ignore: decorator
@inline function legacyCodes(dt: i32, p: usize, hi: bool): v128 {
  const nib = i8x16.splat(15);
  if (dt == DT_Q8_0) return hi ? v128.load(p, 18) : v128.load(p, 2);
  if (dt == DT_IQ4_NL) return i8x16.swizzle(iq4Levels(), hi ? highNibbles(v128.load(p, 2)) : v128.and(v128.load(p, 2), nib));
  if (dt == DT_Q4_0 || dt == DT_Q4_1) {
    const q = dt == DT_Q4_0 ? v128.load(p, 2) : v128.load(p, 4);
    return hi ? highNibbles(q) : v128.and(q, nib);
  }
  // Q5_0 (d, qh, qs; codes - 16) and Q5_1 (d, m, qh, qs): the fifth bits from qh
  const off: usize = dt == DT_Q5_0 ? 2 : 4;
  const qh = load<u32>(p + off);
  const q = v128.load(p + off + 4);
  return hi ? v128.or(highNibbles(q), fifthBits(qh >> 16)) : v128.or(v128.and(q, nib), fifthBits(qh & 0xffff));
}

/** The halves at p, p + s, p + 2s, p + 3s as f32 lanes: h2fScalar's conversion in SIMD (inf and NaN
 *  included), so each lane is the scalar half(). */
// @ts-ignore: decorator
@inline function halves4(p: usize, s: usize): v128 {
  const h = i32x4.replace_lane(i32x4.replace_lane(i32x4.replace_lane(i32x4.splat(<i32>load<u16>(p)), 1, <i32>load<u16>(p + s)), 2, <i32>load<u16>(p + 2 * s)), 3, <i32>load<u16>(p + 3 * s));
  const em = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  let bits = f32x4.mul(em, f32x4.splat(reinterpret<f32>(0x77800000)));
  bits = v128.or(bits, v128.and(i32x4.ge_u(em, i32x4.splat(0x0f800000)), i32x4.splat(0x7f800000)));
  return v128.or(bits, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** The codes' offset of a 32-value format as a shift: Σ(c − k)·x = Σc·x − (Σx << log2 k) (Q4_0's 8,
 *  Q5_0's 16; 0: no offset). */
// @ts-ignore: decorator
@inline function legacyOffsetShift(dt: i32): i32 {
  return dt == DT_Q4_0 ? 3 : dt == DT_Q5_0 ? 4 : 0;
}

/** Q4_K / Q5_K: Σ_j min_j · (sum of span j's activation codes) over a block's 8 spans, as 4 lanes to
 *  add up: the 8 mins as i16 (m16) · the token's 8 span sums at g, one i16 dot product. */
// @ts-ignore: decorator
@inline function kMins(m16: v128, g: usize): v128 {
  return i32x4.dot_i16x8_s(m16, v128.load(g));
}

/** The lane sum of v. */
// @ts-ignore: decorator
@inline function laneSum(v: v128): i32 {
  return i32x4.extract_lane(v, 0) + i32x4.extract_lane(v, 1) + i32x4.extract_lane(v, 2) + i32x4.extract_lane(v, 3);
}

/** The lane sums of a, b, c, d as one vector [Σa, Σb, Σc, Σd] (i32: any order is exact). */
// @ts-ignore: decorator
@inline function laneSums4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(v128.shuffle<i32>(a, b, 0, 4, 1, 5), v128.shuffle<i32>(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(v128.shuffle<i32>(c, d, 0, 4, 1, 5), v128.shuffle<i32>(c, d, 2, 6, 3, 7));
  return i32x4.add(v128.shuffle<i32>(ab, cd, 0, 1, 4, 5), v128.shuffle<i32>(ab, cd, 2, 3, 6, 7));
}

/** [a, b, c, d] as i32 lanes. */
// @ts-ignore: decorator
@inline function lanes4(a: i32, b: i32, c: i32, d: i32): v128 {
  return i32x4.replace_lane(i32x4.replace_lane(i32x4.replace_lane(i32x4.splat(a), 1, b), 2, c), 3, d);
}

/**
 * One K-quant span (32 values) · one token's activation codes at xj, added into its integer sum. Q4_K,
 * Q5_K: two spans at once (c0, c1 the first's 32 codes, c2, c3 the next's; scales s0, s1); IQ4_XS:
 * signed levels c0, c1 with one scale s0; Q2_K, Q3_K: unsigned c0, c1 with a scale per 16 (s0, s1).
 */
// @ts-ignore: decorator
@inline function kSpanToken(dt: i32, c0: v128, c1: v128, c2: v128, c3: v128, s0: i32, s1: i32, xj: usize, isum: v128): v128 {
  const cb = <usize>CODE_BYTES;
  if (dt == DT_Q4_K || dt == DT_Q5_K) return dotCodes32Scaled(c2, c3, xj + 32 * cb, s1, dotCodes32Scaled(c0, c1, xj, s0, isum));
  if (dt == DT_IQ4_XS) return i32x4.add(isum, i32x4.mul(dotCodesS(c1, xj + 16 * cb, dotCodesS(c0, xj, i32x4.splat(0))), i32x4.splat(s0)));
  return dotCodes16Scaled(c1, xj + 16 * cb, s1, dotCodes16Scaled(c0, xj, s0, isum));
}

/** Q2_K's mins (Σ min·Σx) or Q3_K's offsets (Σ −4·s·Σx) of span `span` for one token: its two groups. */
// @ts-ignore: decorator
@inline function kSpanSums(dt: i32, a: i32, b: i32, tp: usize, cols: i32, span: i32): i32 {
  const s = actSums(tp, cols) + (<usize>span << 3);
  if (dt == DT_Q2_K) return a * load<i32>(s) + b * load<i32>(s, 4);
  return -4 * (a * load<i32>(s) + b * load<i32>(s, 4));
}

/** Q6_K's offset 32 · Σ_g scale_g · Σx_g of one token (group sums at xs) as 4 lanes to take off its
 *  integer sum: two i16 dot products (|Σx_g| ≤ 16·127 fits i16), the 16 group scales in s. */
// @ts-ignore: decorator
@inline function q6Offsets(s: v128, xs: usize): v128 {
  const xs0 = i16x8.narrow_i32x4_s(v128.load(xs), v128.load(xs, 16));
  const xs1 = i16x8.narrow_i32x4_s(v128.load(xs, 32), v128.load(xs, 48));
  return i32x4.shl(i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(s), xs0), i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(s), xs1)), 5);
}

/** A K-quant block's integer total for one token (its lanes, then the offsets), in f32 as a row adds
 *  it: d·dx·total − dmin·dx·mins (Q6_K: total·d·dx). One conversion per block: the lanes (unsigned
 *  codes, offsets apart) can pass 2^24 and cancel, where converting each would round it. */
// @ts-ignore: decorator
@inline function kBlockValue(dt: i32, d: f32, dmin: f32, total: i32, mins: i32, dx: f32): f32 {
  if (dt == DT_Q6_K) return <f32>total * d * dx;
  return d * dx * <f32>total - dmin * dx * <f32>mins;
}

/** kBlockValue for 4 tokens at once, one per lane: the same operations in the same order per lane. */
// @ts-ignore: decorator
@inline function kBlockValues(dt: i32, d: f32, dmin: f32, total: v128, mins: v128, dx: v128): v128 {
  if (dt == DT_Q6_K) return f32x4.mul(f32x4.mul(f32x4.convert_i32x4_s(total), f32x4.splat(d)), dx);
  return f32x4.sub(f32x4.mul(f32x4.mul(f32x4.splat(d), dx), f32x4.convert_i32x4_s(total)), f32x4.mul(f32x4.mul(f32x4.splat(dmin), dx), f32x4.convert_i32x4_s(mins)));
}

/**
 * The integer way, fused per format, for T tokens at once (T = 1..4, a constant in each compiled copy):
 * each block's codes are unpacked once from the row w and meet each token's 8-bit activations
 * (prepareActivations' layout; token t's at prep + t·ps) in integer dot products (simd.ts: dotCodes32,
 * dotCodesS and the scaled forms), weighted by the span's integer sub-block scales, and converted to
 * f32 once per block. Token t's result goes to out + t·os. Each token's arithmetic is the same, step
 * for step, whatever T: a token's result in a prefill equals its one-token matvec's.
 *
 * Codes stored with an offset (Q4_0's 8, Q5_0's 16, Q3_K's 4, Q6_K's 32) are taken unsigned, as the
 * relaxed dot product's i7 operand wants them, and the offset times the activation codes' sums is
 * taken off in integers. Mins (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K) meet the same sums of the rounded
 * activations, as llama.cpp's bsums: a row is then exactly the dequantized weights · the rounded
 * activations, llama.cpp's number (the f32 sums, mixed with rounded codes, moved decode logits 2× as
 * far from llama.cpp's on ref-6m).
 */
// @ts-ignore: decorator
@inline function intRowDotsOf(w: usize, dt: i32, prep: usize, ps: usize, groups: usize, cols: i32, out: usize, os: usize, T: i32): void {
  const cb = <usize>CODE_BYTES;
  const t1 = prep + ps, t2 = t1 + ps, t3 = t2 + ps; // tokens 1..3's activations (unused past T)
  // T = 1: the 32-value formats' blocks (acc) and mins, or the K-quants' blocks (off); T > 1: the
  // same per token in lanes (accs, offs), the block ends of 4 tokens in one vector
  let acc: f32 = 0, off: f32 = 0;
  let accs = f32x4.splat(0), offs = accs;
  const z = i32x4.splat(0);
  const nib = i8x16.splat(15);
  const bv = blockValues(dt);
  const bb = blockBytes(dt);
  let b = 0;
  if (bv == 32 && T == 1) {
    // one token: 4 blocks at a time, their totals in one vector and then added one by one (the same
    // arithmetic per block as every token's when T > 1, for about the cost of lane-wise sums)
    const sh = legacyOffsetShift(dt);
    for (; b + 4 <= cols >> 5; b += 4) {
      const p = w + <usize>b * bb;
      const x = actCodes(prep, cols) + (<usize>b << 5) * cb;
      const i0 = legacyDot(dt, legacyCodes(dt, p, false), legacyCodes(dt, p, true), x);
      const i1 = legacyDot(dt, legacyCodes(dt, p + bb, false), legacyCodes(dt, p + bb, true), x + 32 * cb);
      const i2 = legacyDot(dt, legacyCodes(dt, p + 2 * bb, false), legacyCodes(dt, p + 2 * bb, true), x + 64 * cb);
      const i3 = legacyDot(dt, legacyCodes(dt, p + 3 * bb, false), legacyCodes(dt, p + 3 * bb, true), x + 96 * cb);
      let totals = laneSums4(i0, i1, i2, i3);
      let xsum = z; // the 4 spans' Σx, where an offset or a min needs them
      if (sh > 0 || dt == DT_Q4_1 || dt == DT_Q5_1) {
        const xs = actSums(prep, cols) + (<usize>b << 3);
        const s0 = v128.load(xs), s1 = v128.load(xs, 16);
        xsum = i32x4.add(v128.shuffle<i32>(s0, s1, 0, 2, 4, 6), v128.shuffle<i32>(s0, s1, 1, 3, 5, 7));
      }
      if (sh > 0) totals = i32x4.sub(totals, i32x4.shl(xsum, sh));
      const dx = v128.load(prep + (<usize>(cols >> 4) << 2) + (<usize>b << 2)); // the 4 spans' scales
      const v = f32x4.mul(f32x4.convert_i32x4_s(totals), f32x4.mul(halves4(p, bb), dx));
      acc = acc + f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
      if (dt == DT_Q4_1 || dt == DT_Q5_1) {
        const o = f32x4.mul(f32x4.mul(halves4(p + 2, bb), dx), f32x4.convert_i32x4_s(xsum));
        off = off + f32x4.extract_lane(o, 0) + f32x4.extract_lane(o, 1) + f32x4.extract_lane(o, 2) + f32x4.extract_lane(o, 3);
      }
    }
  }
  for (; b < cols / bv; b++) {
    const p = w + <usize>b * bb;
    const span0 = (b * bv) >> 5; // index of the block's first 32-value span in the row
    if (bv == 32) {
      const d = half(p);
      const c0 = legacyCodes(dt, p, false), c1 = legacyCodes(dt, p, true);
      const m: f32 = dt == DT_Q4_1 || dt == DT_Q5_1 ? half(p + 2) : 0;
      // each token's dot product, then per block one conversion of its integer total, times d·dx
      const x = actCodes(prep, cols) + (<usize>span0 << 5) * cb;
      const sh = legacyOffsetShift(dt);
      if (T == 1) {
        const xs = actSums(prep, cols) + (<usize>span0 << 3);
        const xsum = load<i32>(xs) + load<i32>(xs, 4);
        const dx = actScale(prep, cols, span0);
        acc += <f32>(laneSum(legacyDot(dt, c0, c1, x)) - (sh > 0 ? xsum << sh : 0)) * (d * dx);
        if (dt == DT_Q4_1 || dt == DT_Q5_1) off += m * dx * <f32>xsum;
        continue;
      }
      const g = groups + (<usize>span0 << 5); // the 4 tokens' scales, then their Σx
      const dx = v128.load(g), xsum = v128.load(g, 16);
      const i0 = legacyDot(dt, c0, c1, x), i1 = legacyDot(dt, c0, c1, x + ps);
      const i2 = T > 2 ? legacyDot(dt, c0, c1, x + 2 * ps) : z, i3 = T > 3 ? legacyDot(dt, c0, c1, x + 3 * ps) : z;
      let totals = laneSums4(i0, i1, i2, i3);
      if (sh > 0) totals = i32x4.sub(totals, i32x4.shl(xsum, sh));
      accs = f32x4.add(accs, f32x4.mul(f32x4.convert_i32x4_s(totals), f32x4.mul(f32x4.splat(d), dx)));
      if (dt == DT_Q4_1 || dt == DT_Q5_1) offs = f32x4.add(offs, f32x4.mul(f32x4.mul(f32x4.splat(m), dx), f32x4.convert_i32x4_s(xsum)));
      continue;
    }
    // super-blocks of 256: 8 spans of 32, each two 16-groups with integer scales
    let d: f32, dmin: f32 = 0;
    if (dt == DT_Q2_K) {
      d = half(p + 80);
      dmin = half(p + 82);
    } else if (dt == DT_Q3_K) {
      d = half(p + 108);
    } else if (dt == DT_Q6_K) {
      d = half(p + 208);
    } else {
      d = half(p);
      if (dt != DT_IQ4_XS) dmin = half(p + 2); // Q4_K, Q5_K
    }
    // per token: the integer sum, Σ min·Σx (mins) and the codes' offsets (ioff)
    let isum0 = i32x4.splat(0), isum1 = isum0, isum2 = isum0, isum3 = isum0;
    let mins0 = 0, mins1 = 0, mins2 = 0, mins3 = 0;
    let ioff0 = 0, ioff1 = 0, ioff2 = 0, ioff3 = 0;
    let minsv = i32x4.splat(0); // Q4_K / Q5_K, T > 1: mins0..3 in lanes
    const x0 = actCodes(prep, cols) + (<usize>span0 << 5) * cb; // token 0's codes of the block; token t's t·ps on
    // Q4_K / Q5_K: the 8 six-bit scales and the 8 mins, one per byte of two u64s (llama.cpp's unpacking
    // of the 12 bytes; scaleMin4 one at a time)
    let scales8: u64 = 0;
    if (dt == DT_Q4_K || dt == DT_Q5_K) {
      const u0 = load<u32>(p + 4), u1 = load<u32>(p + 8), u2 = load<u32>(p + 12);
      scales8 = <u64>(u0 & 0x3f3f3f3f) | (<u64>((u2 & 0x0f0f0f0f) | (((u0 >> 6) & 0x03030303) << 4)) << 32);
      const mins8 = <u64>(u1 & 0x3f3f3f3f) | (<u64>(((u2 >> 4) & 0x0f0f0f0f) | (((u1 >> 6) & 0x03030303) << 4)) << 32);
      const m16 = i16x8.extend_low_i8x16_u(i64x2.splat(mins8));
      const g = actSpanSums(prep, cols) + (<usize>span0 << 1);
      if (T == 1) mins0 = laneSum(kMins(m16, g));
      else {
        // the tokens' mins in one vector (lane t), so the block's end is one vector per 4 tokens
        minsv = laneSums4(kMins(m16, g), kMins(m16, g + ps), T > 2 ? kMins(m16, g + 2 * ps) : z, T > 3 ? kMins(m16, g + 3 * ps) : z);
      }
    }
    if (dt == DT_Q6_K) {
      // per half: the 64 bytes of low nibbles and 32 of high bits loaded once for its 4 spans; each
      // 16 codes (unsigned: the offset 32 comes off below) meet every token
      for (let h: usize = 0; h < 2; h++) {
        const ql = p + h * 64, qh = p + 128 + h * 32, sc = p + 192 + h * 8;
        const a0 = v128.load(ql), a1 = v128.load(ql, 16), b0 = v128.load(ql, 32), b1 = v128.load(ql, 48);
        const h0 = v128.load(qh), h1 = v128.load(qh, 16);
        const xh = x0 + (h << 7) * cb;
        // spans k = 0..3 of the half: low nibbles of ql, of ql + 32, then their high nibbles; high bits 2k
        const c0 = q6Codes(v128.and(a0, nib), h0, 0), c1 = q6Codes(v128.and(a1, nib), h1, 0);
        const c2 = q6Codes(v128.and(b0, nib), h0, 2), c3 = q6Codes(v128.and(b1, nib), h1, 2);
        const c4 = q6Codes(highNibbles(a0), h0, 4), c5 = q6Codes(highNibbles(a1), h1, 4);
        const c6 = q6Codes(highNibbles(b0), h0, 6), c7 = q6Codes(highNibbles(b1), h1, 6);
        isum0 = q6HalfToken(c0, c1, c2, c3, c4, c5, c6, c7, sc, xh, isum0);
        if (T > 1) isum1 = q6HalfToken(c0, c1, c2, c3, c4, c5, c6, c7, sc, xh + ps, isum1);
        if (T > 2) isum2 = q6HalfToken(c0, c1, c2, c3, c4, c5, c6, c7, sc, xh + 2 * ps, isum2);
        if (T > 3) isum3 = q6HalfToken(c0, c1, c2, c3, c4, c5, c6, c7, sc, xh + 3 * ps, isum3);
      }
      // Σ_g scale_g · Σx_g: group g's scale is byte 192 + g
      const s = v128.load(p + 192);
      const g = actSums(prep, cols) + (<usize>span0 << 3);
      isum0 = i32x4.sub(isum0, q6Offsets(s, g));
      if (T > 1) isum1 = i32x4.sub(isum1, q6Offsets(s, g + ps));
      if (T > 2) isum2 = i32x4.sub(isum2, q6Offsets(s, g + 2 * ps));
      if (T > 3) isum3 = i32x4.sub(isum3, q6Offsets(s, g + 3 * ps));
    } else {
      const step = dt == DT_Q4_K || dt == DT_Q5_K ? 2 : 1; // Q4_K / Q5_K: two spans per pass
      for (let j = 0; j < 8; j += step) {
        const span = span0 + j;
        const xj = x0 + (<usize>j << 5) * cb;
        let c0: v128, c1: v128, c2 = nib, c3 = nib;
        let s0: i32, s1 = 0;
        if (dt == DT_Q4_K || dt == DT_Q5_K) {
          // spans j and j + 1 are the low and high nibbles of the same 32 bytes: one load for both
          const q = p + (dt == DT_Q5_K ? 48 : 16) + (<usize>(j >> 1) << 5);
          const q0 = v128.load(q), q1 = v128.load(q, 16);
          c0 = v128.and(q0, nib);
          c1 = v128.and(q1, nib);
          c2 = highNibbles(q0);
          c3 = highNibbles(q1);
          if (dt == DT_Q5_K) {
            const sixteen = i8x16.splat(16);
            const h0 = v128.load(p + 16), h1 = v128.load(p + 32);
            const lowValue: i32 = 1 << j, highValue: i32 = 2 << j;
            const lowBit = i8x16.splat(<i8>lowValue), highBit = i8x16.splat(<i8>highValue);
            c0 = v128.or(c0, v128.and(i8x16.eq(v128.and(h0, lowBit), lowBit), sixteen));
            c1 = v128.or(c1, v128.and(i8x16.eq(v128.and(h1, lowBit), lowBit), sixteen));
            c2 = v128.or(c2, v128.and(i8x16.eq(v128.and(h0, highBit), highBit), sixteen));
            c3 = v128.or(c3, v128.and(i8x16.eq(v128.and(h1, highBit), highBit), sixteen));
          }
          const sc = <i32>(scales8 >> (<u64>j << 3)); // bytes j, j + 1
          s0 = sc & 0xff;
          s1 = (sc >> 8) & 0xff;
        } else if (dt == DT_IQ4_XS) {
          const q = v128.load(p + 8 + (<usize>j << 4));
          const high = <i32>load<u16>(p + 2);
          c0 = i8x16.swizzle(iq4Levels(), v128.and(q, nib));
          c1 = i8x16.swizzle(iq4Levels(), highNibbles(q));
          s0 = (((<i32>load<u8>(p + 4 + <usize>(j >> 1)) >> (4 * (j & 1))) & 15) | (((high >> (2 * j)) & 3) << 4)) - 32;
        } else {
          // Q2_K and Q3_K: 2-bit codes at shift 2·(j mod 4) of qs[32·(j / 4) ..]
          const three = i8x16.splat(3);
          const shift = (j & 3) << 1;
          const q = p + (dt == DT_Q2_K ? 16 : 32) + (<usize>(j >> 2) << 5);
          c0 = v128.and(i16x8.shr_u(v128.load(q), shift), three);
          c1 = v128.and(i16x8.shr_u(v128.load(q, 16), shift), three);
          if (dt == DT_Q2_K) {
            const a = <i32>load<u8>(p + <usize>(2 * j)), b2 = <i32>load<u8>(p + <usize>(2 * j + 1));
            s0 = a & 15;
            s1 = b2 & 15;
            mins0 += kSpanSums(dt, a >> 4, b2 >> 4, prep, cols, span);
            if (T > 1) mins1 += kSpanSums(dt, a >> 4, b2 >> 4, t1, cols, span);
            if (T > 2) mins2 += kSpanSums(dt, a >> 4, b2 >> 4, t2, cols, span);
            if (T > 3) mins3 += kSpanSums(dt, a >> 4, b2 >> 4, t3, cols, span);
          } else {
            // Q3_K: code + 4 = the 2 low bits, plus 4 where hmask's bit is set; the offset 4 in ioff
            const bitValue: i32 = 1 << j;
            const bit = i8x16.splat(<i8>bitValue);
            const four = i8x16.splat(4);
            c0 = v128.or(c0, v128.and(i8x16.eq(v128.and(v128.load(p), bit), bit), four));
            c1 = v128.or(c1, v128.and(i8x16.eq(v128.and(v128.load(p, 16), bit), bit), four));
            s0 = scale3(p + 96, 2 * j) - 32;
            s1 = scale3(p + 96, 2 * j + 1) - 32;
            ioff0 += kSpanSums(dt, s0, s1, prep, cols, span);
            if (T > 1) ioff1 += kSpanSums(dt, s0, s1, t1, cols, span);
            if (T > 2) ioff2 += kSpanSums(dt, s0, s1, t2, cols, span);
            if (T > 3) ioff3 += kSpanSums(dt, s0, s1, t3, cols, span);
          }
        }
        isum0 = kSpanToken(dt, c0, c1, c2, c3, s0, s1, xj, isum0);
        if (T > 1) isum1 = kSpanToken(dt, c0, c1, c2, c3, s0, s1, xj + ps, isum1);
        if (T > 2) isum2 = kSpanToken(dt, c0, c1, c2, c3, s0, s1, xj + 2 * ps, isum2);
        if (T > 3) isum3 = kSpanToken(dt, c0, c1, c2, c3, s0, s1, xj + 3 * ps, isum3);
      }
    }
    // one activation scale per 256 (prepared with span 256)
    if (T == 1) {
      off += kBlockValue(dt, d, dmin, laneSum(isum0) + ioff0, mins0, actScale(prep, cols, b));
      continue;
    }
    let totals = laneSums4(isum0, isum1, T > 2 ? isum2 : z, T > 3 ? isum3 : z);
    if (dt == DT_Q3_K) totals = i32x4.add(totals, lanes4(ioff0, ioff1, ioff2, ioff3));
    if (dt == DT_Q2_K) minsv = lanes4(mins0, mins1, mins2, mins3);
    offs = f32x4.add(offs, kBlockValues(dt, d, dmin, totals, minsv, v128.load(groups + (<usize>b << 5))));
  }
  if (T == 1) {
    store<f32>(out, acc + off);
    return;
  }
  const r = f32x4.add(accs, offs);
  store<f32>(out, f32x4.extract_lane(r, 0));
  store<f32>(out + os, f32x4.extract_lane(r, 1));
  if (T > 2) store<f32>(out + 2 * os, f32x4.extract_lane(r, 2));
  if (T > 3) store<f32>(out + 3 * os, f32x4.extract_lane(r, 3));
}

/** A Q6_K code vector: 4 low bits `lo` and the 2 bits at `shift` of the high-bit bytes `qh`, unsigned. */
// @ts-ignore: decorator
@inline function q6Codes(lo: v128, qh: v128, shift: i32): v128 {
  return v128.or(lo, i16x8.shl(v128.and(i16x8.shr_u(qh, shift), i8x16.splat(3)), 4));
}

/** Half a Q6_K block (its 8 code vectors c0..c7 of 16, their int8 scales at sc) · one token's codes at xh, added into isum. */
// @ts-ignore: decorator
@inline function q6HalfToken(c0: v128, c1: v128, c2: v128, c3: v128, c4: v128, c5: v128, c6: v128, c7: v128, sc: usize, xh: usize, isum: v128): v128 {
  const cb = <usize>CODE_BYTES;
  isum = dotCodes16Scaled(c0, xh, <i32>load<i8>(sc), isum);
  isum = dotCodes16Scaled(c1, xh + 16 * cb, <i32>load<i8>(sc, 1), isum);
  isum = dotCodes16Scaled(c2, xh + 32 * cb, <i32>load<i8>(sc, 2), isum);
  isum = dotCodes16Scaled(c3, xh + 48 * cb, <i32>load<i8>(sc, 3), isum);
  isum = dotCodes16Scaled(c4, xh + 64 * cb, <i32>load<i8>(sc, 4), isum);
  isum = dotCodes16Scaled(c5, xh + 80 * cb, <i32>load<i8>(sc, 5), isum);
  isum = dotCodes16Scaled(c6, xh + 96 * cb, <i32>load<i8>(sc, 6), isum);
  return dotCodes16Scaled(c7, xh + 112 * cb, <i32>load<i8>(sc, 7), isum);
}

/** intRowDotsOf for T tokens, compiled once per format (dt a constant in each copy: no per-block format tests). */
// @ts-ignore: decorator
@inline function intRowDotsT(w: usize, dt: i32, prep: usize, ps: usize, groups: usize, cols: i32, out: usize, os: usize, T: i32): void {
  switch (dt) {
    case DT_Q8_0: intRowDotsOf(w, DT_Q8_0, prep, ps, groups, cols, out, os, T); break;
    case DT_Q4_0: intRowDotsOf(w, DT_Q4_0, prep, ps, groups, cols, out, os, T); break;
    case DT_Q4_1: intRowDotsOf(w, DT_Q4_1, prep, ps, groups, cols, out, os, T); break;
    case DT_Q5_0: intRowDotsOf(w, DT_Q5_0, prep, ps, groups, cols, out, os, T); break;
    case DT_Q5_1: intRowDotsOf(w, DT_Q5_1, prep, ps, groups, cols, out, os, T); break;
    case DT_Q2_K: intRowDotsOf(w, DT_Q2_K, prep, ps, groups, cols, out, os, T); break;
    case DT_Q3_K: intRowDotsOf(w, DT_Q3_K, prep, ps, groups, cols, out, os, T); break;
    case DT_Q4_K: intRowDotsOf(w, DT_Q4_K, prep, ps, groups, cols, out, os, T); break;
    case DT_Q5_K: intRowDotsOf(w, DT_Q5_K, prep, ps, groups, cols, out, os, T); break;
    case DT_Q6_K: intRowDotsOf(w, DT_Q6_K, prep, ps, groups, cols, out, os, T); break;
    case DT_IQ4_NL: intRowDotsOf(w, DT_IQ4_NL, prep, ps, groups, cols, out, os, T); break;
    default: intRowDotsOf(w, DT_IQ4_XS, prep, ps, groups, cols, out, os, T);
  }
}

function intRowDots1(w: usize, dt: i32, prep: usize, cols: i32, out: usize): void {
  intRowDotsT(w, dt, prep, 0, 0, cols, out, 0, 1);
}
function intRowDots2(w: usize, dt: i32, prep: usize, ps: usize, groups: usize, cols: i32, out: usize, os: usize): void {
  intRowDotsT(w, dt, prep, ps, groups, cols, out, os, 2);
}
function intRowDots3(w: usize, dt: i32, prep: usize, ps: usize, groups: usize, cols: i32, out: usize, os: usize): void {
  intRowDotsT(w, dt, prep, ps, groups, cols, out, os, 3);
}
function intRowDots4(w: usize, dt: i32, prep: usize, ps: usize, groups: usize, cols: i32, out: usize, os: usize): void {
  intRowDotsT(w, dt, prep, ps, groups, cols, out, os, 4);
}

/**
 * The integer prefill: out[t][r] = W[r] · x_t for rows [r0, r1) of a part (row stride rb) and n
 * tokens, their activations prepared at prep (prepareTokens). Tokens go 4 at a time over every row of
 * the item: each block of a row is unpacked once per 4 tokens, and the 4 tokens' codes stay in cache
 * while the item's rows pass.
 */
export function intMatmulRows(out: usize, w: usize, dt: i32, rb: usize, rows: i32, cols: i32, n: i32, r0: i32, r1: i32, prep: usize): void {
  dt &= ~DT_INT_DOT;
  const ps = preparedStride(cols);
  const os = <usize>rows << 2;
  for (let t = 0; t < n; t += 4) {
    const tp = prep + <usize>t * ps;
    const groups = tokenGroups(prep, n, cols) + <usize>(t >> 2) * <usize>cols;
    const ot = out + <usize>t * os;
    const T = min(4, n - t);
    for (let r = r0; r < r1; r++) {
      const wr = w + <usize>r * rb, o = ot + (<usize>r << 2);
      if (T == 4) intRowDots4(wr, dt, tp, ps, groups, cols, o, os);
      else if (T == 3) intRowDots3(wr, dt, tp, ps, groups, cols, o, os);
      else if (T == 2) intRowDots2(wr, dt, tp, ps, groups, cols, o, os);
      else intRowDots1(wr, dt, tp, cols, o);
    }
  }
}

/** Where prepareTokens puts, per 4 tokens, their activation scales side by side (cols bytes a group). */
// @ts-ignore: decorator
@inline function tokenGroups(prep: usize, n: i32, cols: i32): usize {
  return prep + <usize>n * preparedStride(cols);
}

/**
 * The n tokens x[n][cols] prepared for intMatmulRows at prep, preparedStride(cols) bytes apart; then
 * per 4 tokens (tokenGroups), for each span of `activationSpan` values, the 4 tokens' f32 scales and
 * (32-value spans) their i32 code sums, 32 bytes (missing tokens 0): one load each per block for 4 tokens.
 */
export function prepareTokens(prep: usize, x: usize, dt: i32, cols: i32, n: i32): void {
  const ps = preparedStride(cols);
  const span = activationSpan(dt);
  for (let t = 0; t < n; t++) prepareActivations(prep + <usize>t * ps, x + (<usize>t * <usize>cols << 2), cols, span);
  const groups = tokenGroups(prep, n, cols);
  for (let t = 0; t < n; t += 4) {
    const g = groups + <usize>(t >> 2) * <usize>cols;
    for (let i = 0; i < cols / span; i++) {
      const e = g + (<usize>i << 5);
      for (let k = 0; k < 4; k++) {
        let scale: f32 = 0, sum = 0;
        if (t + k < n) {
          const tp = prep + <usize>(t + k) * ps;
          const xs = actSums(tp, cols) + (<usize>i << 3);
          scale = actScale(tp, cols, i);
          if (span == 32) sum = load<i32>(xs) + load<i32>(xs, 4);
        }
        store<f32>(e + (<usize>k << 2), scale);
        store<i32>(e + 16 + (<usize>k << 2), sum);
      }
    }
  }
}

/** Values per activation scale for a block type: what prepareActivations' `span` must be. */
export function activationSpan(dt: i32): i32 {
  return blockValues(dt & ~DT_INT_DOT);
}

/** w (a stored row of block type dt) · x the f32 way, with `prep` from prepareActivations (its f32 sums). */
export function blockRowDot(w: usize, dt: i32, x: usize, prep: usize, cols: i32, scratch: usize): f32 {
  // the f32 way: decode a block into codes and group scales, widen the codes in registers
  const bv = blockValues(dt);
  const bb = blockBytes(dt);
  const codes = scratch, groups = scratch + 256;
  const sums = prep;
  let acc = f32x4.splat(0);
  let offsets: f32 = 0;
  for (let b = 0; b < cols / bv; b++) {
    decodeBlock(dt, w + <usize>b * bb, codes, groups);
    const first = b * bv;
    for (let g = 0; g < bv >> 4; g++) {
      const at = first + (g << 4); // index of the group's first value in the row
      const c = v128.load(codes + (<usize>g << 4));
      offsets += load<f32>(groups + (<usize>g << 3), 4) * load<f32>(sums + (<usize>(at >> 4) << 2));
      const lo = i16x8.extend_low_i8x16_s(c), hi = i16x8.extend_high_i8x16_s(c);
      const xg = x + (<usize>at << 2);
      const s = f32x4.add(
        f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), v128.load(xg)), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), v128.load(xg, 16))),
        f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), v128.load(xg, 32)), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), v128.load(xg, 48))),
      );
      acc = f32x4.add(acc, f32x4.mul(s, f32x4.splat(load<f32>(groups + (<usize>g << 3)))));
    }
  }
  const t = f32x4.add(acc, v128.shuffle<f32>(acc, acc, 2, 3, 0, 1));
  return f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1) + offsets;
}
