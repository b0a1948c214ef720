// Attention straight from packed (quantized) KV storage. The layout of a stream (codes, LUT, scales and
// zeros per token or per channel group, sparse outliers, f16 sink rows, an f16 residual ring, keys
// stored before RoPE) is defined in src/kernels/packed/types.ts and pack.ts, and decoded by the scalar
// reference in src/kernels/packed/reference.ts, which this file must match bit for bit per decoded row.
//
// Work item = (query t, KV head, group of up to hg query heads). Keys and values are decoded QB slots
// at a time into a per-thread L1 tile (codes → LUT by byte-plane swizzles → scale·u + zero → outliers
// → sink/ring rows → RoPE by angle-sum tables); the tile is scored against every query head of the
// group, then dropped. Nothing of the cache is ever decoded in full.

import {
  ARGS, QATT_CAPACITY, QATT_FAST, QATT_QUERY_BLOCK, QATT_HEAD_DIM, QATT_HEAD_GROUP, QATT_KEYS, QATT_LAST_PROBS, QATT_MASK, QATT_N, QATT_NUM_HEADS,
  QATT_NUM_KV_HEADS, QATT_OUT, QATT_PARTIAL, QATT_POSITIONS, QATT_Q, QATT_RECEIVED, QATT_ROPE_HI, QATT_ROPE_INTERLEAVED,
  QATT_ROPE_LO, QATT_SCALE, QATT_SCRATCH, QATT_SCRATCH_STRIDE, QATT_SPLITS, QATT_TILE, QATT_VALUES, QATT_VISIBLE,
  STREAM_AXIS, STREAM_BITS, STREAM_CODES, STREAM_GROUP, STREAM_LUT, STREAM_OCAP, STREAM_OUTLIERS, STREAM_PARAMS,
  STREAM_PARAMS_HEAD_STRIDE, STREAM_QLEN, STREAM_RING, STREAM_RING_SIZE, STREAM_ROPE, STREAM_ROW_BYTES, STREAM_SINK_ROWS,
  STREAM_SINKS,
} from '../src/kernels/abi';
import { h2f, h2fScalar } from './half';
import { attentionItems } from './items';
import { axpyBlock2, CODE_BYTES, dotCodes32, dotCodesU, expRow, finishItem, hmax4, hsum4, rowMax, scoreBlock } from './simd';

const Q_ARGS: usize = <usize>ARGS;
const QB: i32 = QATT_TILE; // slots per decoded tile

/** OP_QUANT_ATTENTION jobs (dispatched by `run` in index.ts). */
export function quantAttentionJob(ctrl: usize, thread: i32): i32 {
  const a = ctrl + Q_ARGS;
  return attentionItems(ctrl, thread, load<i32>(a, QATT_N), load<i32>(a, QATT_NUM_HEADS), load<i32>(a, QATT_NUM_KV_HEADS),
    load<i32>(a, QATT_HEAD_GROUP), load<i32>(a, QATT_QUERY_BLOCK), load<u32>(a, QATT_RECEIVED) != 0, load<i32>(a, QATT_SPLITS),
    load<i32>(a, QATT_VISIBLE), QB, qattendItem);
}

function f16Row(dst: usize, src: usize, d: i32): void {
  for (let i = 0; i < d; i++) store<f32>(dst + (<usize>i << 2), h2fScalar(<u32>load<u16>(src + (<usize>i << 1))));
}

/** 16 codes (bytes < 16) → 16 f32 LUT entries: one swizzle per byte plane, then byte interleaves. */
// @ts-ignore: decorator
@inline function lutStore(dst: usize, c: v128, p0: v128, p1: v128, p2: v128, p3: v128): void {
  const b0 = i8x16.swizzle(p0, c);
  const b1 = i8x16.swizzle(p1, c);
  const b2 = i8x16.swizzle(p2, c);
  const b3 = i8x16.swizzle(p3, c);
  const lo01 = i8x16.shuffle(b0, b1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const hi01 = i8x16.shuffle(b0, b1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const lo23 = i8x16.shuffle(b2, b3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const hi23 = i8x16.shuffle(b2, b3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  v128.store(dst, i8x16.shuffle(lo01, lo23, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23));
  v128.store(dst, i8x16.shuffle(lo01, lo23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), 16);
  v128.store(dst, i8x16.shuffle(hi01, hi23, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23), 32);
  v128.store(dst, i8x16.shuffle(hi01, hi23, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31), 48);
}

// @ts-ignore: decorator
@inline function u8x16ToF32(dst: usize, v: v128): void {
  const lo = i16x8.extend_low_i8x16_u(v);
  const hi = i16x8.extend_high_i8x16_u(v);
  v128.store(dst, f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(lo)));
  v128.store(dst, f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(lo)), 16);
  v128.store(dst, f32x4.convert_i32x4_u(i32x4.extend_low_i16x8_u(hi)), 32);
  v128.store(dst, f32x4.convert_i32x4_u(i32x4.extend_high_i16x8_u(hi)), 48);
}

/**
 * The 64 codes of one packed chunk (2, 3, 4 or 8 bits) as bytes: dst[c] = code of channel c. Layout as
 * src/kernels/packed/pack.ts writes it: plane k of a byte holds channels 16k..16k+15.
 */
// @ts-ignore: decorator
@inline function unpackChunk(dst: usize, p: usize, bits: i32): void {
  if (bits == 8) {
    memory.copy(dst, p, 64);
  } else if (bits == 4) {
    const m = i8x16.splat(15);
    const b0 = v128.load(p);
    const b1 = v128.load(p, 16);
    v128.store(dst, v128.and(b0, m));
    v128.store(dst, i8x16.shr_u(b0, 4), 16);
    v128.store(dst, v128.and(b1, m), 32);
    v128.store(dst, i8x16.shr_u(b1, 4), 48);
  } else if (bits == 2) {
    const m = i8x16.splat(3);
    const b = v128.load(p);
    v128.store(dst, v128.and(b, m));
    v128.store(dst, v128.and(i8x16.shr_u(b, 2), m), 16);
    v128.store(dst, v128.and(i8x16.shr_u(b, 4), m), 32);
    v128.store(dst, i8x16.shr_u(b, 6), 48);
  } else {
    const m = i8x16.splat(3);
    const four = i8x16.splat(4);
    const z = i8x16.splat(0);
    const b = v128.load(p);
    const hb = v128.load64_splat(p + 16); // lanes j and j+8 both hold high-bit byte j
    v128.store(dst, v128.or(v128.and(b, m), v128.and(i8x16.ne(v128.and(hb, i8x16(1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2)), z), four)));
    v128.store(dst, v128.or(v128.and(i8x16.shr_u(b, 2), m), v128.and(i8x16.ne(v128.and(hb, i8x16(4, 4, 4, 4, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8)), z), four)), 16);
    v128.store(dst, v128.or(v128.and(i8x16.shr_u(b, 4), m), v128.and(i8x16.ne(v128.and(hb, i8x16(16, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32, 32, 32)), z), four)), 32);
    v128.store(dst, v128.or(i8x16.shr_u(b, 6), v128.and(i8x16.ne(v128.and(hb, i8x16(64, 64, 64, 64, 64, 64, 64, 64, -128, -128, -128, -128, -128, -128, -128, -128)), z), four)), 48);
  }
}

/** Codes of a packed row as bytes (whole 64-code chunks: may write up to 63 bytes past d). */
// @ts-ignore: decorator
@inline function unpackRow(dst: usize, p: usize, bits: i32, d: i32): void {
  const cb = <usize>(8 * bits);
  for (let c0 = 0; c0 < d; c0 += 64) {
    unpackChunk(dst + <usize>c0, p, bits);
    p += cb;
  }
}

/**
 * LUT values of a packed row's codes into dst (whole 64-code chunks: may write up to 63 floats past d).
 * `codes`: 64 bytes of scratch.
 */
function decodeCodes(dst: usize, p: usize, bits: i32, d: i32, p0: v128, p1: v128, p2: v128, p3: v128, codes: usize): void {
  const cb = <usize>(8 * bits);
  for (let c0 = 0; c0 < d; c0 += 64) {
    const o = dst + (<usize>c0 << 2);
    if (bits == 16) {
      // bfloat16: the high half of an f32
      for (let k: usize = 0; k < 8; k++) {
        const v = v128.load(p + (k << 4));
        v128.store(o + (k << 5), i32x4.shl(i32x4.extend_low_i16x8_u(v), 16));
        v128.store(o + (k << 5), i32x4.shl(i32x4.extend_high_i16x8_u(v), 16), 16);
      }
    } else if (bits == 8) {
      u8x16ToF32(o, v128.load(p));
      u8x16ToF32(o + 64, v128.load(p, 16));
      u8x16ToF32(o + 128, v128.load(p, 32));
      u8x16ToF32(o + 192, v128.load(p, 48));
    } else {
      unpackChunk(codes, p, bits);
      lutStore(o, v128.load(codes), p0, p1, p2, p3);
      lutStore(o + 64, v128.load(codes, 16), p0, p1, p2, p3);
      lutStore(o + 128, v128.load(codes, 32), p0, p1, p2, p3);
      lutStore(o + 192, v128.load(codes, 48), p0, p1, p2, p3);
    }
    p += cb;
  }
}

/** The scales and zeros of KV head kvh of a stream. */
// @ts-ignore: decorator
@inline function headParams(desc: usize, kvh: i32): usize {
  return <usize>load<u32>(desc, STREAM_PARAMS) + <usize>kvh * <usize>load<u32>(desc, STREAM_PARAMS_HEAD_STRIDE);
}

/** The packed code row of slot s of KV head kvh of a stream (rows of STREAM_ROW_BYTES; cap slots per head). */
// @ts-ignore: decorator
@inline function slotCodes(desc: usize, kvh: i32, cap: i32, s: i32): usize {
  return <usize>load<u32>(desc, STREAM_CODES) + (<usize>kvh * <usize>cap + <usize>s) * <usize>load<u32>(desc, STREAM_ROW_BYTES);
}

/**
 * Decodes slots [s0, s0+bs) of KV head kvh of a stream into tile rows of d floats. chS/chZ: d floats of
 * scratch for channel-axis scales; stage: 64 bytes of scratch.
 */
/** Channel-axis scales and zeros of the token group of slot s0 of KV head kvh → chS, chZ (d floats each). */
function channelParams(desc: usize, kvh: i32, s0: i32, d: i32, chS: usize, chZ: usize): void {
  const group = load<i32>(desc, STREAM_GROUP);
  const params = headParams(desc, kvh);
  const g = group > 0 ? s0 / group : 0;
  const pp = params + (<usize>g * <usize>d << 2);
  for (let i = 0; i < d; i++) {
    const w = load<u32>(pp + (<usize>i << 2));
    store<f32>(chS + (<usize>i << 2), h2fScalar(w & 0xffff));
    store<f32>(chZ + (<usize>i << 2), h2fScalar(w >>> 16));
  }
}

/**
 * loOnly (fast path, keys whose positions share p >> 6): rows are rotated by the angles of p mod 64
 * alone; the caller has rotated the queries back by the rest. chReady: chS/chZ already hold the
 * channel-axis scales of this tile's token group.
 */
function decodeTile(tile: usize, desc: usize, a: usize, kvh: i32, s0: i32, bs: i32, chS: usize, chZ: usize, stage: usize, loOnly: bool = false,
  chReady: bool = false): void {
  const cap = load<i32>(a, QATT_CAPACITY);
  const d = load<i32>(a, QATT_HEAD_DIM);
  const positions = <usize>load<u32>(a, QATT_POSITIONS);
  const codes = <usize>load<u32>(desc, STREAM_CODES);
  const bits = load<i32>(desc, STREAM_BITS);
  const lut = <usize>load<u32>(desc, STREAM_LUT);
  const axis = load<i32>(desc, STREAM_AXIS);
  const group = load<i32>(desc, STREAM_GROUP);
  const params = headParams(desc, kvh);
  const outl = <usize>load<u32>(desc, STREAM_OUTLIERS);
  const ocap = load<i32>(desc, STREAM_OCAP);
  const ring = <usize>load<u32>(desc, STREAM_RING);
  const ringN = load<i32>(desc, STREAM_RING_SIZE);
  const qlen = load<i32>(desc, STREAM_QLEN);
  const sinkRows = <usize>load<u32>(desc, STREAM_SINK_ROWS);
  const sinks = load<i32>(desc, STREAM_SINKS);
  const rb = <usize>load<u32>(desc, STREAM_ROW_BYTES);
  const db = <usize>d << 2;
  const p0 = v128.load(lut, 64), p1 = v128.load(lut, 80), p2 = v128.load(lut, 96), p3 = v128.load(lut, 112);
  if (axis == 1 && s0 < qlen && !chReady) channelParams(desc, kvh, s0, d, chS, chZ);
  const groups = axis == 0 && bits != 16 ? (d + group - 1) / group : 0;
  for (let r = 0; r < bs; r++) {
    const s = s0 + r;
    const row = tile + <usize>r * db;
    const slot = <usize>kvh * <usize>cap + <usize>s;
    if (s >= qlen) {
      f16Row(row, ring + ((<usize>kvh * <usize>ringN + <usize>(s % ringN)) * <usize>d << 1), d);
      continue;
    }
    decodeCodes(row, codes + slot * rb, bits, d, p0, p1, p2, p3, stage);
    if (bits == 16) {
      // bfloat16 rows are the numbers themselves
    } else if (axis == 0) {
      const pp = params + (<usize>s * <usize>groups << 2);
      for (let g = 0; g < groups; g++) {
        const w = load<u32>(pp + (<usize>g << 2));
        const sc = h2fScalar(w & 0xffff), ze = h2fScalar(w >>> 16);
        const S = f32x4.splat(sc), Z = f32x4.splat(ze);
        let i = g * group;
        const end = min(d, i + group);
        for (; i + 4 <= end; i += 4) {
          const o = row + (<usize>i << 2);
          v128.store(o, f32x4.add(f32x4.mul(v128.load(o), S), Z));
        }
        for (; i < end; i++) {
          const o = row + (<usize>i << 2);
          store<f32>(o, load<f32>(o) * sc + ze);
        }
      }
    } else {
      let i = 0;
      for (; i + 4 <= d; i += 4) {
        const o = <usize>i << 2;
        v128.store(row + o, f32x4.add(f32x4.mul(v128.load(row + o), v128.load(chS + o)), v128.load(chZ + o)));
      }
      for (; i < d; i++) {
        const o = <usize>i << 2;
        store<f32>(row + o, load<f32>(row + o) * load<f32>(chS + o) + load<f32>(chZ + o));
      }
    }
    if (ocap > 0) {
      const op = outl + (slot * <usize>ocap << 2);
      for (let e = 0; e < ocap; e++) {
        const w = load<u32>(op + (<usize>e << 2));
        const ch = <i32>(w >>> 16);
        if (ch < d) store<f32>(row + (<usize>ch << 2), h2fScalar(w & 0xffff));
      }
    }
    if (sinks > 0) {
      const pos = load<i32>(positions + (slot << 2));
      if (pos >= 0 && pos < sinks) f16Row(row, sinkRows + ((<usize>kvh * <usize>sinks + <usize>pos) * <usize>d << 1), d);
    }
  }
  if (load<i32>(desc, STREAM_ROPE) != 0) {
    const lo = <usize>load<u32>(a, QATT_ROPE_LO);
    const hi = <usize>load<u32>(a, QATT_ROPE_HI);
    const inter = load<i32>(a, QATT_ROPE_INTERLEAVED) != 0;
    const half = d >> 1;
    const hb = <usize>half << 2;
    const h4 = inter ? 0 : half & ~3;
    const i4 = inter && (half & 3) == 0 ? half : 0;
    for (let r = 0; r < bs; r++) {
      const row = tile + <usize>r * db;
      const pos = load<i32>(positions + ((<usize>kvh * <usize>cap + <usize>(s0 + r)) << 2));
      const lp = lo + (<usize>(pos & 63) * hb << 1);
      // (row 0 of the hi table is cos 1, sin 0)
      const hp = hi + (<usize>(loOnly ? 0 : pos >> 6) * hb << 1);
      let j = 0;
      // half layout: pairs (j, j+half)
      for (; j < h4; j += 4) {
        const o = <usize>j << 2;
        let c = v128.load(lp + o), sn = v128.load(lp + hb + o);
        if (!loOnly) {
          const ch = v128.load(hp + o), sh = v128.load(hp + hb + o);
          const cl = c;
          c = f32x4.sub(f32x4.mul(cl, ch), f32x4.mul(sn, sh));
          sn = f32x4.add(f32x4.mul(sn, ch), f32x4.mul(cl, sh));
        }
        const x = v128.load(row + o), y = v128.load(row + hb + o);
        v128.store(row + o, f32x4.sub(f32x4.mul(x, c), f32x4.mul(y, sn)));
        v128.store(row + hb + o, f32x4.add(f32x4.mul(x, sn), f32x4.mul(y, c)));
      }
      // interleaved layout: pairs (2j, 2j+1), de-interleaved 4 pairs at a time
      for (; j < i4; j += 4) {
        const o = <usize>j << 2;
        const cl = v128.load(lp + o), sl = v128.load(lp + hb + o), ch = v128.load(hp + o), sh = v128.load(hp + hb + o);
        const c = f32x4.sub(f32x4.mul(cl, ch), f32x4.mul(sl, sh));
        const sn = f32x4.add(f32x4.mul(sl, ch), f32x4.mul(cl, sh));
        const v0 = v128.load(row + (o << 1)), v1 = v128.load(row + (o << 1), 16);
        const x = v128.shuffle<f32>(v0, v1, 0, 2, 4, 6);
        const y = v128.shuffle<f32>(v0, v1, 1, 3, 5, 7);
        const nx = f32x4.sub(f32x4.mul(x, c), f32x4.mul(y, sn));
        const ny = f32x4.add(f32x4.mul(x, sn), f32x4.mul(y, c));
        v128.store(row + (o << 1), v128.shuffle<f32>(nx, ny, 0, 4, 1, 5));
        v128.store(row + (o << 1), v128.shuffle<f32>(nx, ny, 2, 6, 3, 7), 16);
      }
      for (; j < half; j++) {
        const o = <usize>j << 2;
        const cl = load<f32>(lp + o), sl = load<f32>(lp + hb + o), ch = load<f32>(hp + o), sh = load<f32>(hp + hb + o);
        const c = cl * ch - sl * sh;
        const sn = sl * ch + cl * sh;
        const ia = row + (inter ? <usize>(2 * j) << 2 : o);
        const ib = row + (inter ? <usize>(2 * j + 1) << 2 : hb + o);
        const x = load<f32>(ia), y = load<f32>(ib);
        store<f32>(ia, x * c - y * sn);
        store<f32>(ib, x * sn + y * c);
      }
    }
  }
}

// ---- Integer paths for plain integer codes (the int codec): token axis, L[c] = c, nothing replacing a
// code (no outliers, sinks or RoPE). Keys are scored by i32x4.dot_i16x8_s against the query written
// once per item as two i16 digits (q ≈ (hi + lo/2^15)·unit), with the scale and zero of each group
// applied to the integer sums (error ≈ 2^-31 of the largest query number); values are summed by the
// same instruction over pairs of slots, each slot's softmax weight times its scale rounded per tile to
// i16 units of the tile's largest (error ≤ 2^-16 of it; the zeros are summed apart in f32).

/** Whether a stream takes the integer path; values (`single`) also need one group per row. */
function intStream(desc: usize, d: i32, single: bool): bool {
  const bits = load<i32>(desc, STREAM_BITS);
  if (bits == 16 || load<i32>(desc, STREAM_AXIS) != 0 || load<i32>(desc, STREAM_OCAP) != 0) return false;
  if (load<i32>(desc, STREAM_SINKS) != 0 || load<i32>(desc, STREAM_ROPE) != 0) return false;
  if ((d & 15) != 0 || d > 256) return false; // i32 sums stay below 2^31 for d ≤ 256
  const group = load<i32>(desc, STREAM_GROUP);
  if (group < d && (single || (group & 15) != 0)) return false;
  if (bits == 8) return true;
  const lut = <usize>load<u32>(desc, STREAM_LUT);
  for (let c = 0; c < 1 << bits; c++) if (load<f32>(lut + (<usize>c << 2)) != <f32>c) return false;
  return true;
}

/**
 * f32 → nearest i16, ties to even (|x| ≤ 32767 here), 8 at a time: x + 1.5·2^23 rounds to an integer
 * whose low 16 bits are round(x) in two's complement (cheaper than nearest, trunc_sat and narrow).
 */
// @ts-ignore: decorator
@inline function toI16x8(a: v128, b: v128): v128 {
  const m = f32x4.splat(12582912);
  return i8x16.shuffle(f32x4.add(a, m), f32x4.add(b, m), 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
}

/**
 * The g query rows at q (d floats apart) → q16 (i16 [g][2][d]: high then low digits), qs[j] =
 * scale·max|q_j|/32767 (one unit of the high digit) and qsum[j·groups + k] = scale·Σ q over group k.
 * top = 127 (fast path, codes of ≤ 4 bits): one digit, round(q·127/max|q|), written as the integer dot
 * products read activation codes (CODE_BYTES each: i8 in the relaxed build, i16 in SIMD128); qs[j] one unit of it.
 */
function intQueries(q: usize, g: i32, d: i32, group: i32, scale: f32, q16: usize, qs: usize, qsum: usize, top: i32 = 32767): void {
  const db = <usize>d << 2;
  const groups = (d + group - 1) / group;
  for (let j = 0; j < g; j++) {
    const row = q + <usize>j * db;
    let mv = f32x4.splat(0);
    for (let i = 0; i < d; i += 4) mv = f32x4.max(mv, f32x4.abs(v128.load(row + (<usize>i << 2))));
    const m = hmax4(mv);
    const inv = f32x4.splat(m > 0 ? <f32>top / m : 0);
    const dst = q16 + (<usize>j * <usize>d << 2);
    if (top == 127) {
      for (let i = 0; i < d; i += 16) {
        const o = row + (<usize>i << 2);
        const lo = toI16x8(f32x4.mul(v128.load(o), inv), f32x4.mul(v128.load(o, 16), inv));
        const hi = toI16x8(f32x4.mul(v128.load(o, 32), inv), f32x4.mul(v128.load(o, 48), inv));
        if (CODE_BYTES == 1) {
          v128.store(dst + <usize>i, i8x16.narrow_i16x8_s(lo, hi));
        } else {
          v128.store(dst + (<usize>i << 1), lo);
          v128.store(dst + (<usize>i << 1), hi, 16);
        }
      }
    } else {
      for (let i = 0; i < d; i += 8) {
        const o = row + (<usize>i << 2);
        const x0 = f32x4.mul(v128.load(o), inv), x1 = f32x4.mul(v128.load(o, 16), inv);
        const h0 = f32x4.nearest(x0), h1 = f32x4.nearest(x1);
        v128.store(dst + (<usize>i << 1), toI16x8(h0, h1));
        const r = f32x4.splat(32768);
        v128.store(dst + (<usize>(d + i) << 1), toI16x8(f32x4.mul(f32x4.sub(x0, h0), r), f32x4.mul(f32x4.sub(x1, h1), r)));
      }
    }
    store<f32>(qs + (<usize>j << 2), scale * (m / <f32>top));
    for (let k = 0; k < groups; k++) {
      let sum: f32 = 0;
      for (let i = k * group; i < min(d, (k + 1) * group); i++) sum += load<f32>(row + (<usize>i << 2));
      store<f32>(qsum + (<usize>(j * groups + k) << 2), scale * sum);
    }
  }
}

/**
 * Token-axis scales and zeros of slots [s, s+bs) of a head, `groups` per slot → ps: S of (slot r,
 * group k) at ps[k·QB + r], Z at ps[(groups + k)·QB + r].
 */
function tokenParams(ps: usize, params: usize, s: i32, bs: i32, groups: i32): void {
  const pp = params + (<usize>s * <usize>groups << 2);
  const pz = ps + (<usize>(groups * QB) << 2);
  let r = 0;
  if (groups == 1) {
    const m = i32x4.splat(0xffff);
    for (; r + 4 <= bs; r += 4) {
      const w = v128.load(pp + (<usize>r << 2));
      v128.store(ps + (<usize>r << 2), h2f(v128.and(w, m)));
      v128.store(pz + (<usize>r << 2), h2f(i32x4.shr_u(w, 16)));
    }
  }
  for (; r < bs; r++) {
    for (let k = 0; k < groups; k++) {
      const w = load<u32>(pp + (<usize>(r * groups + k) << 2));
      store<f32>(ps + (<usize>(k * QB + r) << 2), h2fScalar(w & 0xffff));
      store<f32>(pz + (<usize>(k * QB + r) << 2), h2fScalar(w >>> 16));
    }
  }
}

/**
 * Integer-code keys: dst_j[r] = scale·q_j · key_r for slots [s, s+bs) of KV head kvh and the g query
 * heads of q16/qs/qsum. k16: bs·d i16 of scratch; ps: bs·groups·2 floats; stage: d + 64 bytes.
 * two: both query digits (exact path); false: the high digit alone (fast path: the query rounded to 16 bits).
 */
function scoreTileInt(desc: usize, kvh: i32, cap: i32, s: i32, bs: i32, d: i32, g: i32, q16: usize, qs: usize, qsum: usize,
  dst: usize, dstStride: usize, k16: usize, ps: usize, stage: usize, two: bool = true): void {
  const bits = load<i32>(desc, STREAM_BITS);
  const group = min(d, load<i32>(desc, STREAM_GROUP));
  const groups = (d + group - 1) / group;
  const rb = <usize>load<u32>(desc, STREAM_ROW_BYTES);
  const codes = slotCodes(desc, kvh, cap, s);
  const params = headParams(desc, kvh);
  for (let r = 0; r < bs; r++) {
    unpackRow(stage, codes + <usize>r * rb, bits, d);
    const row = k16 + (<usize>r * <usize>d << 1);
    for (let c = 0; c < d; c += 16) {
      const v = v128.load(stage + <usize>c);
      v128.store(row + (<usize>c << 1), i16x8.extend_low_i8x16_u(v));
      v128.store(row + (<usize>c << 1), i16x8.extend_high_i8x16_u(v), 16);
    }
  }
  tokenParams(ps, params, s, bs, groups);
  const pz = ps + (<usize>(groups * QB) << 2);
  const db2 = <usize>d << 1;
  const lo15 = f32x4.splat(1.0 / 32768);
  for (let j = 0; j < g; j++) {
    const qj = q16 + (<usize>j * <usize>d << 2);
    const ql = qj + db2;
    const unit = load<f32>(qs + (<usize>j << 2));
    const sums = qsum + (<usize>(j * groups) << 2);
    const out = dst + <usize>j * dstStride;
    let r = 0;
    // 4 slots at a time: one horizontal sum for the four
    for (; r + 4 <= bs; r += 4) {
      const r0 = k16 + (<usize>r * db2), r1 = r0 + db2, r2 = r1 + db2, r3 = r2 + db2;
      let score = f32x4.splat(0);
      for (let k = 0; k < groups; k++) {
        let h0 = i32x4.splat(0), h1 = h0, h2 = h0, h3 = h0, l0 = h0, l1 = h0, l2 = h0, l3 = h0;
        for (let c = k * group; c < (k + 1) * group; c += 8) {
          const o = <usize>c << 1;
          const qh = v128.load(qj + o), qv = v128.load(ql + o);
          const k0 = v128.load(r0 + o), k1 = v128.load(r1 + o), k2 = v128.load(r2 + o), k3 = v128.load(r3 + o);
          h0 = i32x4.add(h0, i32x4.dot_i16x8_s(k0, qh));
          h1 = i32x4.add(h1, i32x4.dot_i16x8_s(k1, qh));
          h2 = i32x4.add(h2, i32x4.dot_i16x8_s(k2, qh));
          h3 = i32x4.add(h3, i32x4.dot_i16x8_s(k3, qh));
          if (!two) continue;
          l0 = i32x4.add(l0, i32x4.dot_i16x8_s(k0, qv));
          l1 = i32x4.add(l1, i32x4.dot_i16x8_s(k1, qv));
          l2 = i32x4.add(l2, i32x4.dot_i16x8_s(k2, qv));
          l3 = i32x4.add(l3, i32x4.dot_i16x8_s(k3, qv));
        }
        const dot = hsum4(
          f32x4.add(f32x4.convert_i32x4_s(h0), f32x4.mul(f32x4.convert_i32x4_s(l0), lo15)),
          f32x4.add(f32x4.convert_i32x4_s(h1), f32x4.mul(f32x4.convert_i32x4_s(l1), lo15)),
          f32x4.add(f32x4.convert_i32x4_s(h2), f32x4.mul(f32x4.convert_i32x4_s(l2), lo15)),
          f32x4.add(f32x4.convert_i32x4_s(h3), f32x4.mul(f32x4.convert_i32x4_s(l3), lo15)),
        );
        const o = <usize>(k * QB + r) << 2;
        score = f32x4.add(score, f32x4.add(
          f32x4.mul(v128.load(ps + o), f32x4.mul(dot, f32x4.splat(unit))),
          f32x4.mul(v128.load(pz + o), v128.load32_splat(sums + (<usize>k << 2))),
        ));
      }
      v128.store(out + (<usize>r << 2), score);
    }
    for (; r < bs; r++) {
      const row = k16 + (<usize>r * db2);
      let score: f32 = 0;
      for (let k = 0; k < groups; k++) {
        let hi = i32x4.splat(0), lo = hi;
        for (let c = k * group; c < (k + 1) * group; c += 8) {
          const o = <usize>c << 1;
          const kv = v128.load(row + o);
          hi = i32x4.add(hi, i32x4.dot_i16x8_s(kv, v128.load(qj + o)));
          if (two) lo = i32x4.add(lo, i32x4.dot_i16x8_s(kv, v128.load(ql + o)));
        }
        const both = f32x4.add(f32x4.convert_i32x4_s(hi), f32x4.mul(f32x4.convert_i32x4_s(lo), lo15));
        const dot = f32x4.extract_lane(both, 0) + f32x4.extract_lane(both, 1) + f32x4.extract_lane(both, 2) + f32x4.extract_lane(both, 3);
        const o = <usize>(k * QB + r) << 2;
        score += load<f32>(ps + o) * (unit * dot) + load<f32>(pz + o) * load<f32>(sums + (<usize>k << 2));
      }
      store<f32>(out + (<usize>r << 2), score);
    }
  }
}

/**
 * Fast path, integer-code keys of ≤ 4 bits: as scoreTileInt with one 8-bit query digit (intQueries with
 * top = 127), the codes read as bytes by the i8 dot products (i16 ones in SIMD128; the same integers).
 * Four slots at a time (the last four may hold rows past bs: their lanes are not stored). codes: QB·d
 * bytes + 64 of scratch; ps: bs·groups·2 floats.
 */
function scoreTileQ8(desc: usize, kvh: i32, cap: i32, s: i32, bs: i32, d: i32, g: i32, q8: usize, qs: usize, qsum: usize,
  dst: usize, dstStride: usize, codes: usize, ps: usize): void {
  const bits = load<i32>(desc, STREAM_BITS);
  const group = min(d, load<i32>(desc, STREAM_GROUP));
  const groups = (d + group - 1) / group;
  const rb = <usize>load<u32>(desc, STREAM_ROW_BYTES);
  const src = slotCodes(desc, kvh, cap, s);
  const params = headParams(desc, kvh);
  const db = <usize>d;
  for (let r = 0; r < bs; r++) unpackRow(codes + <usize>r * db, src + <usize>r * rb, bits, d);
  tokenParams(ps, params, s, bs, groups);
  const pz = ps + (<usize>(groups * QB) << 2);
  const cb = <usize>CODE_BYTES;
  const zero = i32x4.splat(0);
  for (let j = 0; j < g; j++) {
    const qj = q8 + (<usize>j * <usize>d << 2);
    const unit = f32x4.splat(load<f32>(qs + (<usize>j << 2)));
    const sums = qsum + (<usize>(j * groups) << 2);
    const out = dst + <usize>j * dstStride;
    for (let r = 0; r < bs; r += 4) {
      const r0 = codes + <usize>r * db, r1 = r0 + db, r2 = r1 + db, r3 = r2 + db;
      let score = f32x4.splat(0);
      for (let k = 0; k < groups; k++) {
        let h0 = zero, h1 = zero, h2 = zero, h3 = zero;
        const end = (k + 1) * group;
        let c = k * group;
        for (; c + 32 <= end; c += 32) {
          const o = <usize>c, x = qj + <usize>c * cb;
          h0 = dotCodes32(v128.load(r0 + o), v128.load(r0 + o, 16), x, h0);
          h1 = dotCodes32(v128.load(r1 + o), v128.load(r1 + o, 16), x, h1);
          h2 = dotCodes32(v128.load(r2 + o), v128.load(r2 + o, 16), x, h2);
          h3 = dotCodes32(v128.load(r3 + o), v128.load(r3 + o, 16), x, h3);
        }
        if (c < end) {
          // a 16-channel tail (groups of 16)
          const o = <usize>c, x = qj + <usize>c * cb;
          h0 = dotCodesU(v128.load(r0 + o), x, h0);
          h1 = dotCodesU(v128.load(r1 + o), x, h1);
          h2 = dotCodesU(v128.load(r2 + o), x, h2);
          h3 = dotCodesU(v128.load(r3 + o), x, h3);
        }
        const dot = hsum4(f32x4.convert_i32x4_s(h0), f32x4.convert_i32x4_s(h1), f32x4.convert_i32x4_s(h2), f32x4.convert_i32x4_s(h3));
        const o = <usize>(k * QB + r) << 2;
        score = f32x4.add(score, f32x4.add(f32x4.mul(v128.load(ps + o), f32x4.mul(dot, unit)), f32x4.mul(v128.load(pz + o), v128.load32_splat(sums + (<usize>k << 2)))));
      }
      const o = out + (<usize>r << 2);
      if (r + 4 <= bs) {
        v128.store(o, score);
      } else {
        for (let i = 0; i < bs - r; i++) store<f32>(o + (<usize>i << 2), laneOf(score, i));
      }
    }
  }
}

/** Lane i (0..3) of an f32x4. */
function laneOf(v: v128, i: i32): f32 {
  if (i == 0) return f32x4.extract_lane(v, 0);
  if (i == 1) return f32x4.extract_lane(v, 1);
  return i == 2 ? f32x4.extract_lane(v, 2) : f32x4.extract_lane(v, 3);
}

/**
 * Integer-code values (one group per row): acc_j += Σ_r p_j[r]·(S_r·code_r + Z_r) over slots [s, s+bs)
 * of KV head kvh, the Z part added to zsum[j] (the caller adds it to every channel at the end).
 * p_j = p + j·pStride (softmax numerators). pairs: bs·d i16 + d of scratch; iw: g·QB/2 u32 (i16
 * weight pairs); ps: 2·bs floats; stage: 2·(d + 64) bytes.
 * Fast path (lv ≠ 0, see levels): codes are read as their levels' integers u (L ≈ a·u + b), so the
 * weights carry a·S_r and the zero sums b·S_r + Z_r; each sparse outlier adds p·(outlier − dense) in f32.
 * top = 127 (fast path, codes of ≤ 4 bits, no outliers): weights rounded to 8 bits, on i8 dot products
 * in the relaxed build (the same integers as SIMD128's i16 ones).
 */
function axpyTileInt(desc: usize, kvh: i32, cap: i32, s: i32, bs: i32, d: i32, g: i32, p: usize, pStride: usize, acc: usize,
  zsum: usize, pairs: usize, iw: usize, ps: usize, stage: usize, lv: usize = 0, top: i32 = 32767): void {
  const bits = load<i32>(desc, STREAM_BITS);
  const rb = <usize>load<u32>(desc, STREAM_ROW_BYTES);
  const codes = slotCodes(desc, kvh, cap, s);
  const params = headParams(desc, kvh);
  const np = (bs + 1) >> 1;
  // 8-bit weights in the relaxed build: byte pairs on i8 dot products (see bytePairs, sumBytePairs)
  const bytes = ASC_FEATURE_RELAXED_SIMD && top == 127;
  const pb = <usize>d << (bytes ? 1 : 2); // bytes per pair row: d channels × 2 slots × i8 or i16
  const stageB = stage + <usize>d + 64;
  tokenParams(ps, params, s, bs, 1);
  const pz = ps + (<usize>QB << 2);
  const ocap = lv != 0 ? load<i32>(desc, STREAM_OCAP) : 0;
  const mapped = lv != 0 && load<i32>(lv, LV_IDENTITY) == 0;
  if (mapped) {
    const la = load<f32>(lv, LV_A), lb = load<f32>(lv, LV_B);
    for (let r = 0; r < bs; r++) {
      const S = load<f32>(ps + (<usize>r << 2));
      store<f32>(pz + (<usize>r << 2), lb * S + load<f32>(pz + (<usize>r << 2)));
      store<f32>(ps + (<usize>r << 2), la * S);
    }
  }
  // rows 2k and 2k+1 interleaved: channel c of pair k is the i16 pair (code_2k, code_2k+1)
  for (let k = 0; k < np; k++) {
    if (bytes) {
      bytePairs(pairs + <usize>k * pb, codes + <usize>(2 * k) * rb, rb, bits, d, 2 * k + 1 < bs, stage, stageB);
      continue;
    }
    unpackRow(stage, codes + <usize>(2 * k) * rb, bits, d);
    if (2 * k + 1 < bs) unpackRow(stageB, codes + <usize>(2 * k + 1) * rb, bits, d);
    else memory.fill(stageB, 0, <usize>d);
    if (mapped) {
      mapLevels(stage, lv, d);
      mapLevels(stageB, lv, d);
    }
    if (ocap > 0) {
      valueOutliers(desc, kvh, cap, s, 2 * k, d, g, p, pStride, acc, ps, stage);
      if (2 * k + 1 < bs) valueOutliers(desc, kvh, cap, s, 2 * k + 1, d, g, p, pStride, acc, ps, stageB);
    }
    const dst = pairs + <usize>k * pb;
    for (let c = 0; c < d; c += 16) {
      const A = v128.load(stage + <usize>c), B = v128.load(stageB + <usize>c);
      const lo = i8x16.shuffle(A, B, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const hi = i8x16.shuffle(A, B, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      const o = dst + (<usize>c << 2);
      v128.store(o, i16x8.extend_low_i8x16_u(lo));
      v128.store(o, i16x8.extend_high_i8x16_u(lo), 16);
      v128.store(o, i16x8.extend_low_i8x16_u(hi), 32);
      v128.store(o, i16x8.extend_high_i8x16_u(hi), 48);
    }
  }
  for (let j = 0; j < g; j++) {
    const pj = p + <usize>j * pStride;
    const iwj = iw + (<usize>j * <usize>np << 2);
    const wmax = tileWeights(pj, ps, bs, zsum + (<usize>j << 2), top, iwj);
    const unit = f32x4.splat(wmax / <f32>top);
    const aj = acc + (<usize>j * <usize>d << 2);
    if (bytes) {
      // i16 pair words → i8 pairs, 8 at a time in place (|w| ≤ 127)
      for (let k = 0; k < np; k += 8) v128.store(iwj + (<usize>k << 1), i8x16.narrow_i16x8_s(v128.load(iwj + (<usize>k << 2)), v128.load(iwj + (<usize>k << 2), 16)));
      sumBytePairs(aj, iwj, np, pairs, pb, d, unit);
      continue;
    }
    let c = 0;
    for (; c + 16 <= d; c += 16) {
      let a0 = i32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
      for (let k = 0; k < np; k++) {
        const W = v128.load32_splat(iwj + (<usize>k << 2));
        const o = pairs + <usize>k * pb + (<usize>c << 2);
        a0 = i32x4.add(a0, i32x4.dot_i16x8_s(v128.load(o), W));
        a1 = i32x4.add(a1, i32x4.dot_i16x8_s(v128.load(o, 16), W));
        a2 = i32x4.add(a2, i32x4.dot_i16x8_s(v128.load(o, 32), W));
        a3 = i32x4.add(a3, i32x4.dot_i16x8_s(v128.load(o, 48), W));
      }
      const o = aj + (<usize>c << 2);
      v128.store(o, f32x4.add(v128.load(o), f32x4.mul(f32x4.convert_i32x4_s(a0), unit)));
      v128.store(o, f32x4.add(v128.load(o, 16), f32x4.mul(f32x4.convert_i32x4_s(a1), unit)), 16);
      v128.store(o, f32x4.add(v128.load(o, 32), f32x4.mul(f32x4.convert_i32x4_s(a2), unit)), 32);
      v128.store(o, f32x4.add(v128.load(o, 48), f32x4.mul(f32x4.convert_i32x4_s(a3), unit)), 48);
    }
    if (c < d) {
      // the last 8 channels (d a multiple of 8, not 16: fast path only)
      let a0 = i32x4.splat(0), a1 = a0;
      for (let k = 0; k < np; k++) {
        const W = v128.load32_splat(iwj + (<usize>k << 2));
        const o = pairs + <usize>k * pb + (<usize>c << 2);
        a0 = i32x4.add(a0, i32x4.dot_i16x8_s(v128.load(o), W));
        a1 = i32x4.add(a1, i32x4.dot_i16x8_s(v128.load(o, 16), W));
      }
      const o = aj + (<usize>c << 2);
      v128.store(o, madd(f32x4.convert_i32x4_s(a0), unit, v128.load(o)));
      v128.store(o, madd(f32x4.convert_i32x4_s(a1), unit, v128.load(o, 16)), 16);
    }
  }
}

/**
 * Softmax weights of one row over a tile (p: bs numerators; ps: the slots' scales S, then their zero
 * terms QB floats on): adds Σ p·zero to *zsum, writes round(p·S·top/max|p·S|) as i16 pair words
 * (w_2k | w_2k+1 << 16) to iw, and returns max|p·S| (one unit of the weights is it / top).
 */
function tileWeights(p: usize, ps: usize, bs: i32, zsum: usize, top: i32, iw: usize): f32 {
  const pz = ps + (<usize>QB << 2);
  if (bs == 32) return wholeTileWeights(p, ps, pz, zsum, top, iw);
  let mv = f32x4.splat(0), zv = mv;
  let r = 0;
  for (; r + 4 <= bs; r += 4) {
    const e = v128.load(p + (<usize>r << 2));
    mv = f32x4.max(mv, f32x4.abs(f32x4.mul(e, v128.load(ps + (<usize>r << 2)))));
    zv = f32x4.add(zv, f32x4.mul(e, v128.load(pz + (<usize>r << 2))));
  }
  let wmax = hmax4(mv);
  let z = f32x4.extract_lane(zv, 0) + f32x4.extract_lane(zv, 1) + f32x4.extract_lane(zv, 2) + f32x4.extract_lane(zv, 3);
  for (; r < bs; r++) {
    const e = load<f32>(p + (<usize>r << 2));
    wmax = max(wmax, abs(e * load<f32>(ps + (<usize>r << 2))));
    z += e * load<f32>(pz + (<usize>r << 2));
  }
  store<f32>(zsum, load<f32>(zsum) + z);
  const inv: f32 = wmax > 0 ? <f32>top / wmax : 0;
  const I = f32x4.splat(inv);
  r = 0;
  for (; r + 8 <= bs; r += 8) {
    const x0 = f32x4.mul(f32x4.mul(v128.load(p + (<usize>r << 2)), v128.load(ps + (<usize>r << 2))), I);
    const x1 = f32x4.mul(f32x4.mul(v128.load(p + (<usize>r << 2), 16), v128.load(ps + (<usize>r << 2), 16)), I);
    v128.store(iw + (<usize>r << 1), toI16x8(x0, x1));
  }
  for (; r < bs; r += 2) {
    const h0 = <i32>nearest(load<f32>(p + (<usize>r << 2)) * load<f32>(ps + (<usize>r << 2)) * inv);
    const h1 = r + 1 < bs ? <i32>nearest(load<f32>(p + (<usize>(r + 1) << 2)) * load<f32>(ps + (<usize>(r + 1) << 2)) * inv) : 0;
    store<u32>(iw + (<usize>r << 1), (<u32>h0 & 0xffff) | (<u32>h1 << 16));
  }
  return wmax;
}

/**
 * tileWeights of a whole tile (QB = 32 slots), the eight products p·S kept in registers for the rounding
 * (the same operations in the same order: the same numbers).
 */
// @ts-ignore: decorator
@inline function wholeTileWeights(p: usize, ps: usize, pz: usize, zsum: usize, top: i32, iw: usize): f32 {
  const e0 = v128.load(p), e1 = v128.load(p, 16), e2 = v128.load(p, 32), e3 = v128.load(p, 48);
  const e4 = v128.load(p, 64), e5 = v128.load(p, 80), e6 = v128.load(p, 96), e7 = v128.load(p, 112);
  const x0 = f32x4.mul(e0, v128.load(ps)), x1 = f32x4.mul(e1, v128.load(ps, 16)), x2 = f32x4.mul(e2, v128.load(ps, 32));
  const x3 = f32x4.mul(e3, v128.load(ps, 48)), x4 = f32x4.mul(e4, v128.load(ps, 64)), x5 = f32x4.mul(e5, v128.load(ps, 80));
  const x6 = f32x4.mul(e6, v128.load(ps, 96)), x7 = f32x4.mul(e7, v128.load(ps, 112));
  const mv = f32x4.max(
    f32x4.max(f32x4.max(f32x4.abs(x0), f32x4.abs(x1)), f32x4.max(f32x4.abs(x2), f32x4.abs(x3))),
    f32x4.max(f32x4.max(f32x4.abs(x4), f32x4.abs(x5)), f32x4.max(f32x4.abs(x6), f32x4.abs(x7))),
  );
  let zv = f32x4.mul(e0, v128.load(pz));
  zv = f32x4.add(zv, f32x4.mul(e1, v128.load(pz, 16)));
  zv = f32x4.add(zv, f32x4.mul(e2, v128.load(pz, 32)));
  zv = f32x4.add(zv, f32x4.mul(e3, v128.load(pz, 48)));
  zv = f32x4.add(zv, f32x4.mul(e4, v128.load(pz, 64)));
  zv = f32x4.add(zv, f32x4.mul(e5, v128.load(pz, 80)));
  zv = f32x4.add(zv, f32x4.mul(e6, v128.load(pz, 96)));
  zv = f32x4.add(zv, f32x4.mul(e7, v128.load(pz, 112)));
  const wmax = hmax4(mv);
  store<f32>(zsum, load<f32>(zsum) + (f32x4.extract_lane(zv, 0) + f32x4.extract_lane(zv, 1) + f32x4.extract_lane(zv, 2) + f32x4.extract_lane(zv, 3)));
  const I = f32x4.splat(wmax > 0 ? <f32>top / wmax : 0);
  v128.store(iw, toI16x8(f32x4.mul(x0, I), f32x4.mul(x1, I)));
  v128.store(iw, toI16x8(f32x4.mul(x2, I), f32x4.mul(x3, I)), 16);
  v128.store(iw, toI16x8(f32x4.mul(x4, I), f32x4.mul(x5, I)), 32);
  v128.store(iw, toI16x8(f32x4.mul(x6, I), f32x4.mul(x7, I)), 48);
  return wmax;
}

/**
 * Rows 2k and 2k+1 of a tile's codes (at a, rows rb bytes apart; row 2k+1 zero past bs) interleaved by
 * bytes into dst: channel c is the byte pair (code_2k, code_2k+1). 4-bit rows are interleaved before
 * their nibbles split. stage, stageB: d + 64 bytes each.
 */
// @ts-ignore: decorator
@inline function bytePairs(dst: usize, a: usize, rb: usize, bits: i32, d: i32, second: bool, stage: usize, stageB: usize): void {
  if (bits == 4 && second) {
    // plane 0 of a 64-code chunk holds channels 0-15 (low nibbles) and 16-31 (high), plane 1 32-63
    const m = i8x16.splat(15);
    for (let c = 0; c < d; c += 64) {
      const o = a + (<usize>c >> 1);
      for (let h: usize = 0; h < 2; h++) {
        const A = v128.load(o + (h << 4)), B = v128.load(o + rb + (h << 4));
        const lo = i8x16.shuffle(A, B, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
        const hi = i8x16.shuffle(A, B, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
        const t = dst + (<usize>c << 1) + (h << 6);
        v128.store(t, v128.and(lo, m));
        v128.store(t, v128.and(hi, m), 16);
        v128.store(t, i8x16.shr_u(lo, 4), 32);
        v128.store(t, i8x16.shr_u(hi, 4), 48);
      }
    }
    return;
  }
  unpackRow(stage, a, bits, d);
  if (second) unpackRow(stageB, a + rb, bits, d);
  else memory.fill(stageB, 0, <usize>d);
  for (let c = 0; c < d; c += 16) {
    const A = v128.load(stage + <usize>c), B = v128.load(stageB + <usize>c);
    v128.store(dst + (<usize>c << 1), i8x16.shuffle(A, B, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23));
    v128.store(dst + (<usize>c << 1), i8x16.shuffle(A, B, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31), 16);
  }
}

/**
 * acc (d floats) += unit·Σ_k w_k·pair_k over np byte pairs (bytePairs rows pb bytes apart; codes ≤ 15)
 * and i8 weight pairs w at iw (u16 each), relaxed build: each i16 lane w_2k·c_2k + w_2k+1·c_2k+1
 * (≤ 2·127·15), eight pairs summed in i16 (≤ 30480) before widening.
 */
function sumBytePairs(acc: usize, iw: usize, np: i32, pairs: usize, pb: usize, d: i32, unit: v128): void {
  if (!ASC_FEATURE_RELAXED_SIMD) return;
  for (let c = 0; c < d; c += 16) {
    let a0 = i32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (let k0 = 0; k0 < np; k0 += 8) {
      let s0 = i16x8.splat(0), s1 = s0;
      const k1 = min(np, k0 + 8);
      for (let k = k0; k < k1; k++) {
        const W = v128.load16_splat(iw + (<usize>k << 1));
        const o = pairs + <usize>k * pb + (<usize>c << 1);
        s0 = i16x8.add(s0, i16x8.relaxed_dot_i8x16_i7x16_s(W, v128.load(o)));
        s1 = i16x8.add(s1, i16x8.relaxed_dot_i8x16_i7x16_s(W, v128.load(o, 16)));
      }
      a0 = i32x4.add(a0, i32x4.extend_low_i16x8_s(s0));
      a1 = i32x4.add(a1, i32x4.extend_high_i16x8_s(s0));
      a2 = i32x4.add(a2, i32x4.extend_low_i16x8_s(s1));
      a3 = i32x4.add(a3, i32x4.extend_high_i16x8_s(s1));
    }
    const o = acc + (<usize>c << 2);
    v128.store(o, f32x4.add(v128.load(o), f32x4.mul(f32x4.convert_i32x4_s(a0), unit)));
    v128.store(o, f32x4.add(v128.load(o, 16), f32x4.mul(f32x4.convert_i32x4_s(a1), unit)), 16);
    v128.store(o, f32x4.add(v128.load(o, 32), f32x4.mul(f32x4.convert_i32x4_s(a2), unit)), 32);
    v128.store(o, f32x4.add(v128.load(o, 48), f32x4.mul(f32x4.convert_i32x4_s(a3), unit)), 48);
  }
}

/**
 * Sparse value outliers of slot s + r (its level integers in `u`): acc_j[ch] += p_j[r]·(outlier − dense),
 * dense = a·S_r·u + (b·S_r + Z_r) as the integer sums count it (ps holds a·S_r, then the zero terms).
 */
function valueOutliers(desc: usize, kvh: i32, cap: i32, s: i32, r: i32, d: i32, g: i32, p: usize, pStride: usize, acc: usize, ps: usize, u: usize): void {
  const ocap = load<i32>(desc, STREAM_OCAP);
  const op = <usize>load<u32>(desc, STREAM_OUTLIERS) + ((<usize>kvh * <usize>cap + <usize>(s + r)) * <usize>ocap << 2);
  const aS = load<f32>(ps + (<usize>r << 2)), zr = load<f32>(ps + (<usize>(QB + r) << 2));
  for (let e = 0; e < ocap; e++) {
    const w = load<u32>(op + (<usize>e << 2));
    const ch = <i32>(w >>> 16);
    if (ch >= d) continue;
    const delta = h2fScalar(w & 0xffff) - (aS * <f32>load<u8>(u + <usize>ch) + zr);
    for (let j = 0; j < g; j++) {
      const o = acc + ((<usize>j * <usize>d + <usize>ch) << 2);
      store<f32>(o, load<f32>(o) + load<f32>(p + <usize>j * pStride + (<usize>r << 2)) * delta);
    }
  }
}

// ---- The fast path (QATT_FAST: `attention: 'fast'`). Keys and values as integers u of their codes'
// levels, L[c] ≈ a·u[c] + b (the codes themselves for int codes, else L rounded to 8 bits over its
// range); queries rounded to 16 bits per head, per-channel key scales folded in; value weights p·S
// rounded to 16 bits per tile (as above). Both builds multiply on i32x4.dot_i16x8_s: on it a 16-bit
// query costs what an 8-bit one does (llama.cpp's 8 bits suit i8 dot products), and the sums stay
// below 2^31 (|w| ≤ 32767, u ≤ 255, d/4 products per lane: d ≤ 256). Outliers add their difference in f32; tiles holding a
// sink or residual-ring row take the exact path. Keys stored before RoPE cannot fold the rotation into
// the query (each key has its own angle): their tiles are decoded in f32 as on the exact path, but
// rotated by p mod 64 alone, the queries turned back once per tile by the rest (p − p mod 64).

const LV_A = 16; // f32
const LV_B = 20; // f32
const LV_IDENTITY = 24; // i32: u = code
const LV_BYTES = 32;

/**
 * Integer levels of a stream's codes into lv: u[16] bytes, a, b and whether u is the code itself (8-bit
 * codes always, and LUTs with L[c] = c); else u = round((L − min L)·255/(max L − min L)).
 */
function levels(desc: usize, lv: usize): void {
  const bits = load<i32>(desc, STREAM_BITS);
  const lut = <usize>load<u32>(desc, STREAM_LUT);
  const n = bits >= 8 ? 0 : 1 << bits;
  let ident = true;
  let lo: f32 = Infinity, hi: f32 = -Infinity;
  for (let c = 0; c < n; c++) {
    const L = load<f32>(lut + (<usize>c << 2));
    if (L != <f32>c) ident = false;
    lo = min(lo, L);
    hi = max(hi, L);
  }
  store<i32>(lv, ident ? 1 : 0, LV_IDENTITY);
  if (ident) {
    store<f32>(lv, 1, LV_A);
    store<f32>(lv, 0, LV_B);
    for (let c = 0; c < 16; c++) store<u8>(lv + <usize>c, <u8>c);
    return;
  }
  const a: f32 = hi > lo ? (hi - lo) / 255 : 0;
  store<f32>(lv, a, LV_A);
  store<f32>(lv, lo, LV_B);
  for (let c = 0; c < 16; c++) store<u8>(lv + <usize>c, c < n && a > 0 ? <u8>(<i32>nearest((load<f32>(lut + (<usize>c << 2)) - lo) / a)) : 0);
}

/** Codes (bytes < 16) → their level integers, in place, 16 at a time (may run up to 15 bytes past d). */
function mapLevels(codes: usize, lv: usize, d: i32): void {
  const t = v128.load(lv);
  for (let c = 0; c < d; c += 16) v128.store(codes + <usize>c, i8x16.swizzle(t, v128.load(codes + <usize>c)));
}

/** Query row r of an item (row r: query t0 + r/g, head h0 + r%g). */
// @ts-ignore: decorator
@inline function qRow(q: usize, numHeads: i32, t0: i32, h0: i32, g: i32, r: i32, d: i32): usize {
  return q + (<usize>((t0 + r / g) * numHeads + h0 + r % g) * <usize>d << 2);
}

/**
 * Queries for channel-axis keys without RoPE (scales chS and zeros chZ of the tile's token group), per
 * row r: w_c = scale·q_c·a·S_c rounded to 16 bits (i16 lanes at q16 + r·2d; units[r] one step of it) and
 * consts[r] = scale·Σ_c q_c·(b·S_c + Z_c), so that a key scores units·Σ w_c·u_c + consts.
 */
function chanQueries(q: usize, numHeads: i32, t0: i32, h0: i32, g: i32, rows: i32, d: i32, scale: f32, chS: usize, chZ: usize, lv: usize,
  q16: usize, units: usize, consts: usize): void {
  const la = load<f32>(lv, LV_A), lb = load<f32>(lv, LV_B);
  for (let r = 0; r < rows; r++) {
    const row = qRow(q, numHeads, t0, h0, g, r, d);
    let m: f32 = 0;
    let C: f32 = 0;
    for (let i = 0; i < d; i++) {
      const o = <usize>i << 2;
      const x = scale * load<f32>(row + o);
      const S = load<f32>(chS + o);
      m = max(m, abs(x * la * S));
      C += x * (lb * S + load<f32>(chZ + o));
    }
    const inv: f32 = m > 0 ? 32767 / m : 0;
    const dst = q16 + (<usize>r * <usize>d << 1);
    for (let i = 0; i < d; i++) {
      const o = <usize>i << 2;
      store<i16>(dst + (<usize>i << 1), <i16>(<i32>nearest(scale * load<f32>(row + o) * la * load<f32>(chS + o) * inv)));
    }
    store<f32>(units + (<usize>r << 2), m / 32767);
    store<f32>(consts + (<usize>r << 2), C);
  }
}

/**
 * Channel-axis keys without RoPE, fast path: dst_j[r] = units_j·Σ_c w_jc·u_rc + consts_j for slots
 * [s, s+bs) of KV head kvh, plus scale·q_c·(outlier − dense) for each sparse outlier. k16: bs·d i16 of
 * scratch (and 32 bytes past it); stage: d + 64 bytes.
 */
function scoreTileChan(desc: usize, kvh: i32, cap: i32, s: i32, bs: i32, d: i32, rows: i32, q16: usize, units: usize, consts: usize,
  dst: usize, dstStride: usize, k16: usize, stage: usize, lv: usize, chS: usize, chZ: usize, q: usize, numHeads: i32, t0: i32, h0: i32, g: i32,
  scale: f32): void {
  const bits = load<i32>(desc, STREAM_BITS);
  const rb = <usize>load<u32>(desc, STREAM_ROW_BYTES);
  const codes = slotCodes(desc, kvh, cap, s);
  const mapped = load<i32>(lv, LV_IDENTITY) == 0;
  const db2 = <usize>d << 1;
  for (let r = 0; r < bs; r++) {
    unpackRow(stage, codes + <usize>r * rb, bits, d);
    if (mapped) mapLevels(stage, lv, d);
    const row = k16 + <usize>r * db2;
    for (let c = 0; c < d; c += 16) {
      const v = v128.load(stage + <usize>c);
      v128.store(row + (<usize>c << 1), i16x8.extend_low_i8x16_u(v));
      v128.store(row + (<usize>c << 1), i16x8.extend_high_i8x16_u(v), 16);
    }
  }
  for (let j = 0; j < rows; j++) {
    const qj = q16 + <usize>j * db2;
    const U = f32x4.splat(load<f32>(units + (<usize>j << 2)));
    const C = f32x4.splat(load<f32>(consts + (<usize>j << 2)));
    const out = dst + <usize>j * dstStride;
    let r = 0;
    for (; r + 4 <= bs; r += 4) {
      const r0 = k16 + <usize>r * db2, r1 = r0 + db2, r2 = r1 + db2, r3 = r2 + db2;
      let h0 = i32x4.splat(0), h1 = h0, h2 = h0, h3 = h0;
      for (let c = 0; c < d; c += 8) {
        const o = <usize>c << 1;
        const qv = v128.load(qj + o);
        h0 = i32x4.add(h0, i32x4.dot_i16x8_s(v128.load(r0 + o), qv));
        h1 = i32x4.add(h1, i32x4.dot_i16x8_s(v128.load(r1 + o), qv));
        h2 = i32x4.add(h2, i32x4.dot_i16x8_s(v128.load(r2 + o), qv));
        h3 = i32x4.add(h3, i32x4.dot_i16x8_s(v128.load(r3 + o), qv));
      }
      const dot = hsum4(f32x4.convert_i32x4_s(h0), f32x4.convert_i32x4_s(h1), f32x4.convert_i32x4_s(h2), f32x4.convert_i32x4_s(h3));
      v128.store(out + (<usize>r << 2), madd(dot, U, C));
    }
    for (; r < bs; r++) {
      const row = k16 + <usize>r * db2;
      let h = i32x4.splat(0);
      for (let c = 0; c < d; c += 8) h = i32x4.add(h, i32x4.dot_i16x8_s(v128.load(row + (<usize>c << 1)), v128.load(qj + (<usize>c << 1))));
      store<f32>(out + (<usize>r << 2), <f32>(i32x4.extract_lane(h, 0) + i32x4.extract_lane(h, 1) + i32x4.extract_lane(h, 2) + i32x4.extract_lane(h, 3)) *
        f32x4.extract_lane(U, 0) + f32x4.extract_lane(C, 0));
    }
  }
  const ocap = load<i32>(desc, STREAM_OCAP);
  if (ocap == 0) return;
  const la = load<f32>(lv, LV_A), lb = load<f32>(lv, LV_B);
  const outl = <usize>load<u32>(desc, STREAM_OUTLIERS) + ((<usize>kvh * <usize>cap + <usize>s) * <usize>ocap << 2);
  for (let r = 0; r < bs; r++) {
    for (let e = 0; e < ocap; e++) {
      const w = load<u32>(outl + ((<usize>r * <usize>ocap + <usize>e) << 2));
      const ch = <i32>(w >>> 16);
      if (ch >= d) continue;
      const o = <usize>ch << 2;
      const S = load<f32>(chS + o);
      const u = <f32>load<i16>(k16 + <usize>r * db2 + (<usize>ch << 1));
      const delta = h2fScalar(w & 0xffff) - ((la * u + lb) * S + load<f32>(chZ + o));
      for (let j = 0; j < rows; j++) {
        const so = dst + <usize>j * dstStride + (<usize>r << 2);
        store<f32>(so, load<f32>(so) + scale * load<f32>(qRow(q, numHeads, t0, h0, g, j, d) + o) * delta);
      }
    }
  }
}

/**
 * The queries rotated back by the angles of p − p mod 64 (row p >> 6 of the hi table): R(−φ)·q into
 * qrot, rows d floats apart. q·R(p)·k = (R(−φ)·q)·(R(p mod 64)·k).
 */
function rotateQueries(q: usize, numHeads: i32, t0: i32, h0: i32, g: i32, rows: i32, d: i32, hp: usize, inter: bool, qrot: usize): void {
  const half = d >> 1;
  const hb = <usize>half << 2;
  for (let r = 0; r < rows; r++) {
    const src = qRow(q, numHeads, t0, h0, g, r, d);
    const dst = qrot + (<usize>r * <usize>d << 2);
    for (let j = 0; j < half; j++) {
      const o = <usize>j << 2;
      const c = load<f32>(hp + o), sn = load<f32>(hp + hb + o);
      const ia = inter ? <usize>(2 * j) << 2 : o;
      const ib = inter ? <usize>(2 * j + 1) << 2 : hb + o;
      const x = load<f32>(src + ia), y = load<f32>(src + ib);
      store<f32>(dst + ia, x * c + y * sn);
      store<f32>(dst + ib, y * c - x * sn);
    }
  }
}

/** Row p >> 6 shared by the positions of slots [s, s+bs) of KV head kvh, or −1 when they differ (or one is unset). */
function sharedHigh(positions: usize, kvh: i32, cap: i32, s: i32, bs: i32): i32 {
  const base = positions + ((<usize>kvh * <usize>cap + <usize>s) << 2);
  const first = load<i32>(base);
  if (first < 0) return -1;
  const h = first >> 6;
  for (let r = 1; r < bs; r++) {
    const p = load<i32>(base + (<usize>r << 2));
    if (p < 0 || p >> 6 != h) return -1;
  }
  return h;
}

/** Whether no slot of [s, s+bs) of KV head kvh is a sink row (position < sinks). */
function noSinks(positions: usize, kvh: i32, cap: i32, s: i32, bs: i32, sinks: i32): bool {
  if (sinks == 0) return true;
  const base = positions + ((<usize>kvh * <usize>cap + <usize>s) << 2);
  for (let r = 0; r < bs; r++) {
    const p = load<i32>(base + (<usize>r << 2));
    if (p >= 0 && p < sinks) return false;
  }
  return true;
}

/** Whether a stream's codes have an integer form the fast path reads (not bfloat16; d a multiple of 8, ≤ 256). */
function fastStream(desc: usize, d: i32): bool {
  return load<i32>(desc, STREAM_BITS) != 16 && (d & 7) == 0 && d <= 256;
}

/**
 * Softmax numerators in place, fast path: row[s] = e^(row[s] − m) over [0, pad) (pad a multiple of 4),
 * returning their sum. e^x = 2^n·2^f with n = round(x·log2 e) and 2^f (|f| ≤ ½) a degree-4 polynomial
 * (relative error ≤ 3e-6, where simd.ts's exp4 is within 1-2 ulp at twice the instructions; the 8-bit
 * weights round 1000× coarser); e^x below 2^-125 (and masked −∞ slots) is 0. Summed in f32 per 32 slots,
 * then in f64.
 */
function expRowFast(row: usize, pad: i32, m: f32): f64 {
  const mv = f32x4.splat(m);
  const log2e = f32x4.splat(1.44269504088896341);
  const floor = f32x4.splat(-125);
  const c0 = f32x4.splat(0.9999992847442627), c1 = f32x4.splat(0.6931217908859253), c2 = f32x4.splat(0.240247443318367);
  const c3 = f32x4.splat(0.05591786280274391), c4 = f32x4.splat(0.009570102207362652);
  let total = f64x2.splat(0);
  for (let s0 = 0; s0 < pad; s0 += QB) {
    let sum = f32x4.splat(0);
    const end = min(pad, s0 + QB);
    for (let s = s0; s < end; s += 4) {
      const p = row + (<usize>s << 2);
      const t = f32x4.mul(f32x4.sub(v128.load(p), mv), log2e);
      const under = f32x4.lt(t, floor);
      const n = f32x4.nearest(f32x4.pmax(t, floor));
      const f = f32x4.sub(t, n);
      let y = f32x4.add(f32x4.mul(c4, f), c3);
      y = f32x4.add(f32x4.mul(y, f), c2);
      y = f32x4.add(f32x4.mul(y, f), c1);
      y = f32x4.add(f32x4.mul(y, f), c0);
      // 2^n: n + 1.5·2^23 holds n in its low mantissa bits (as exp4 does)
      const pow = i32x4.shl(i32x4.add(f32x4.add(n, f32x4.splat(12582912.0)), i32x4.splat(127 - 0x4b400000)), 23);
      const e = v128.andnot(f32x4.mul(y, pow), under);
      v128.store(p, e);
      sum = f32x4.add(sum, e);
    }
    total = f64x2.add(total, f64x2.add(f64x2.promote_low_f32x4(sum), f64x2.promote_low_f32x4(v128.shuffle<f32>(sum, sum, 2, 3, 0, 1))));
  }
  return f64x2.extract_lane(total, 0) + f64x2.extract_lane(total, 1);
}

/** a·b + c, fused where the build has relaxed SIMD. */
// @ts-ignore: decorator
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/**
 * Attention of queries [t0, t1) for heads [h0, h1) over slots [lo, hi): query t sees slots below
 * min(hi, visible + t). Each key/value tile is decoded once for all (query, head) rows of the item.
 * part < 0: whole views, normalised into `out` (and lastProbs/received). part ≥ 0 (one query): writes
 * [max, sum, Σ e^(s−max)·v (d)] per head to the partial buffer at item `part` for the caller to merge.
 */
function qattendItem(a: usize, thread: i32, t0: i32, t1: i32, kvh: i32, h0: i32, h1: i32, lo: i32, hi: i32, part: i32): void {
  const out = <usize>load<u32>(a, QATT_OUT);
  const q = <usize>load<u32>(a, QATT_Q);
  const n = load<i32>(a, QATT_N);
  const visible = load<i32>(a, QATT_VISIBLE);
  const capacity = load<i32>(a, QATT_CAPACITY);
  const numHeads = load<i32>(a, QATT_NUM_HEADS);
  const d = load<i32>(a, QATT_HEAD_DIM);
  const scale = load<f32>(a, QATT_SCALE);
  const lastProbs = <usize>load<u32>(a, QATT_LAST_PROBS);
  const received = <usize>load<u32>(a, QATT_RECEIVED);
  const scratch = <usize>load<u32>(a, QATT_SCRATCH) + <usize>thread * <usize>load<u32>(a, QATT_SCRATCH_STRIDE);
  const descK = <usize>load<u32>(a, QATT_KEYS);
  const descV = <usize>load<u32>(a, QATT_VALUES);
  const hg = load<i32>(a, QATT_HEAD_GROUP);
  const cap = load<i32>(a, QATT_QUERY_BLOCK) * hg; // rows the scratch holds

  const g = h1 - h0;
  const rows = (t1 - t0) * g; // row (t - t0)·g + j: query t, head h0 + j
  const seen = hi - lo; // slots in this item's range (the last query's)
  const sp = (seen + 3) & ~3;
  const db = <usize>d << 2;
  const scores = scratch;
  const tile = scores + (<usize>cap * <usize>sp << 2);
  const acc = tile + ((<usize>QB * <usize>d + 64) << 2);
  const invs = acc + <usize>cap * db;
  const chS = invs + (<usize>(cap + 4) << 2);
  const chZ = chS + db;
  // integer paths (src/kernels/wasm.ts sizes these): the tile holds their i16 rows
  const stage = chZ + db; // 2·(d + 64) bytes
  const q16 = stage + ((<usize>d + 64) << 1);
  const qs = q16 + (<usize>cap * <usize>d << 2);
  const qsum = qs + (<usize>cap << 2); // cap·d/16 floats
  const zsum = qsum + (<usize>cap * <usize>(d >> 4) << 2);
  const iw = zsum + (<usize>cap << 2); // cap·QB words
  const ps = iw + (<usize>cap * <usize>QB << 2); // QB·max(d/8, 2) floats
  // fast path: level tables, then per row a unit and a constant (queries of channel-axis keys)
  const lvK = ps + (<usize>max(QB * d >> 3, 2 * QB) << 2);
  const lvV = lvK + LV_BYTES;
  const units = lvV + LV_BYTES;
  const consts = units + (<usize>cap << 2);
  const fast = load<i32>(a, QATT_FAST) != 0;
  const positions = <usize>load<u32>(a, QATT_POSITIONS);
  const intK = intStream(descK, d, false);
  const ropeK = load<i32>(descK, STREAM_ROPE) != 0;
  const chanK = fast && !intK && !ropeK && load<i32>(descK, STREAM_AXIS) == 1 && fastStream(descK, d);
  const fastK = fast && ropeK;
  const intV = fast ? fastStream(descV, d) && load<i32>(descV, STREAM_AXIS) == 0 && load<i32>(descV, STREAM_GROUP) >= d : intStream(descV, d, true);
  const qlenK = load<i32>(descK, STREAM_QLEN);
  const qlenV = load<i32>(descV, STREAM_QLEN);
  const sinksK = load<i32>(descK, STREAM_SINKS);
  const sinksV = load<i32>(descV, STREAM_SINKS);
  if (chanK) levels(descK, lvK);
  if (fast && intV) levels(descV, lvV);
  // fast path, integer values of ≤ 4 bits with no outliers: weights rounded to 8 bits per tile
  const q8V = fast && intV && load<i32>(lvV, LV_IDENTITY) != 0 && load<i32>(descV, STREAM_BITS) <= 4 && load<i32>(descV, STREAM_OCAP) == 0 && (d & 15) == 0;
  let chanGroup = -1; // token group whose scales chS/chZ (and the queries of chanK) hold; -1: none
  // fast path, integer keys of ≤ 4 bits: 8-bit queries on the i8 dot products
  const q8K = fast && intK && load<i32>(descK, STREAM_BITS) <= 4;
  if (intK) {
    const group = min(d, load<i32>(descK, STREAM_GROUP));
    const qrow = <usize>(d << 2); // bytes of one row of q16 (two digits)
    const groups = (d + group - 1) / group;
    for (let t = t0; t < t1; t++) {
      const r = <usize>((t - t0) * g);
      intQueries(q + (<usize>(t * numHeads + h0) * db), g, d, group, scale, q16 + r * qrow, qs + (r << 2), qsum + (r * <usize>groups << 2), q8K ? 127 : 32767);
    }
  }

  for (let s0 = 0; s0 < seen; s0 += QB) {
    const bs = min(QB, seen - s0);
    if (q8K && lo + s0 + bs <= qlenK) {
      scoreTileQ8(descK, kvh, capacity, lo + s0, bs, d, rows, q16, qs, qsum, scores + (<usize>s0 << 2), <usize>sp << 2, tile, ps);
      continue;
    }
    if (intK && lo + s0 + bs <= qlenK) {
      scoreTileInt(descK, kvh, capacity, lo + s0, bs, d, rows, q16, qs, qsum, scores + (<usize>s0 << 2), <usize>sp << 2, tile, ps, stage, !fast);
      continue;
    }
    if (chanK && lo + s0 + bs <= qlenK && noSinks(positions, kvh, capacity, lo + s0, bs, sinksK)) {
      const group = load<i32>(descK, STREAM_GROUP);
      const tg = group > 0 ? (lo + s0) / group : 0;
      if (tg != chanGroup) {
        channelParams(descK, kvh, lo + s0, d, chS, chZ);
        chanQueries(q, numHeads, t0, h0, g, rows, d, scale, chS, chZ, lvK, q16, units, consts);
        chanGroup = tg;
      }
      scoreTileChan(descK, kvh, capacity, lo + s0, bs, d, rows, q16, units, consts, scores + (<usize>s0 << 2), <usize>sp << 2, tile, stage, lvK, chS, chZ,
        q, numHeads, t0, h0, g, scale);
      continue;
    }
    // fast path, keys before RoPE: queries turned back by the angle of the tile's shared p − p mod 64
    const high = fastK ? sharedHigh(positions, kvh, capacity, lo + s0, bs) : -1;
    let chReady = false;
    if (high >= 0 && load<i32>(descK, STREAM_AXIS) == 1 && lo + s0 < qlenK) {
      // the scales of a token group are read once (every tile's, for kvquant's one group)
      const group = load<i32>(descK, STREAM_GROUP);
      const tg = group > 0 ? (lo + s0) / group : 0;
      if (tg != chanGroup) {
        channelParams(descK, kvh, lo + s0, d, chS, chZ);
        chanGroup = tg;
      }
      chReady = true;
    }
    decodeTile(tile, descK, a, kvh, lo + s0, bs, chS, chZ, stage, high >= 0, chReady);
    if (!chReady) chanGroup = -1; // decodeTile may have loaded another group's
    if (high >= 0) {
      const hp = <usize>load<u32>(a, QATT_ROPE_HI) + (<usize>high * <usize>d << 2);
      rotateQueries(q, numHeads, t0, h0, g, rows, d, hp, load<i32>(a, QATT_ROPE_INTERLEAVED) != 0, q16);
    }
    for (let t = t0; t < t1; t++) {
      if (visible + t - lo <= s0) continue; // query t sees none of this tile
      for (let j = 0; j < g; j++) {
        const row = (t - t0) * g + j;
        const qr = high >= 0 ? q16 + (<usize>row * db) : q + (<usize>(t * numHeads + h0 + j) * db);
        scoreBlock(qr, tile, d, bs, scores + ((<usize>row * <usize>sp + <usize>s0) << 2), scale);
      }
    }
  }
  // masked slots (a u8 per head and slot) take no part in the softmax
  const mask = <usize>load<u32>(a, QATT_MASK);
  if (mask != 0) {
    for (let r = 0; r < rows; r++) {
      const rowSeen = min(seen, visible + t0 + r / g - lo);
      const row = scores + (<usize>r * <usize>sp << 2);
      const mp = mask + <usize>(h0 + r % g) * <usize>capacity + <usize>lo;
      for (let s = 0; s < rowSeen; s++) if (load<u8>(mp + <usize>s) != 0) store<f32>(row + (<usize>s << 2), -Infinity);
    }
  }
  const partial = <usize>load<u32>(a, QATT_PARTIAL) + (<usize>part * <usize>hg * <usize>(d + 2) << 2);
  for (let r = 0; r < rows; r++) {
    const row = scores + (<usize>r * <usize>sp << 2);
    const rowSeen = min(seen, visible + t0 + r / g - lo);
    const m = rowMax(row, rowSeen, sp);
    const total = fast ? expRowFast(row, sp, m) : expRow(row, sp, m, f32x4.splat(1));
    store<f32>(invs + (<usize>r << 2), total > 0 ? <f32>(1 / total) : 0);
    if (part >= 0) {
      store<f32>(partial + (<usize>r * <usize>(d + 2) << 2), rowSeen > 0 ? m : -Infinity);
      store<f32>(partial + (<usize>r * <usize>(d + 2) << 2), <f32>total, 4);
    }
  }
  memory.fill(acc, 0, <usize>rows * db);
  memory.fill(zsum, 0, <usize>rows << 2);
  for (let s0 = 0; s0 < seen; s0 += QB) {
    const bs = min(QB, seen - s0);
    if (intV && lo + s0 + bs <= qlenV && (!fast || noSinks(positions, kvh, capacity, lo + s0, bs, sinksV))) {
      axpyTileInt(descV, kvh, capacity, lo + s0, bs, d, rows, scores + (<usize>s0 << 2), <usize>sp << 2, acc, zsum, tile, iw, ps, stage, fast ? lvV : 0,
        q8V ? 127 : 32767);
      continue;
    }
    decodeTile(tile, descV, a, kvh, lo + s0, bs, chS, chZ, stage);
    for (let r = 0; r < rows; r++) {
      if (visible + t0 + r / g - lo <= s0) continue; // all its probabilities here are 0
      axpyBlock2(acc + <usize>r * db, 0, scores + ((<usize>r * <usize>sp + <usize>s0) << 2), 0, tile, d, bs);
    }
  }
  if (intV) {
    for (let r = 0; r < rows; r++) {
      const Z = f32x4.splat(load<f32>(zsum + (<usize>r << 2)));
      for (let i = 0; i < d; i += 4) {
        const o = acc + <usize>r * db + (<usize>i << 2);
        v128.store(o, f32x4.add(v128.load(o), Z));
      }
    }
  }
  finishItem(out, acc, scores, <usize>sp << 2, invs, rows, g, t0, h0, min(seen, visible + t0 - lo), numHeads, d, n, part, partial, received, lastProbs,
    capacity);
}
