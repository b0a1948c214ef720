// Attention straight from packed (quantized) KV storage. The layout of a stream (codes, LUT, scales and
// zeros per token or per channel group, sparse outliers, f16 sink rows, an f16 residual ring, keys
// stored before RoPE) is defined in src/kernels/quant/types.ts and pack.ts, and decoded by the scalar
// reference in src/kernels/quant/reference.ts, which this file must match bit for bit per decoded row.
//
// Work item = (query t, KV head, group of up to hg query heads). Keys and values are decoded QB slots
// at a time into a per-thread L1 tile (codes → LUT by byte-plane swizzles → scale·u + zero → outliers
// → sink/ring rows → RoPE by angle-sum tables); the tile is scored against every query head of the
// group, then dropped. Nothing of the cache is ever decoded in full.

import {
  ARGS, CTRL_DONE, CTRL_NEXT, QATT_CAPACITY, QATT_HEAD_DIM, QATT_HEAD_GROUP, QATT_KEYS, QATT_LAST_PROBS, QATT_N, QATT_NUM_HEADS,
  QATT_NUM_KV_HEADS, QATT_OUT, QATT_PARTIAL, QATT_POSITIONS, QATT_Q, QATT_RECEIVED, QATT_ROPE_HI, QATT_ROPE_INTERLEAVED,
  QATT_ROPE_LO, QATT_SCALE, QATT_SCRATCH, QATT_SCRATCH_STRIDE, QATT_SPLITS, QATT_TILE, QATT_VALUES, QATT_VISIBLE,
  STREAM_AXIS, STREAM_BITS, STREAM_CODES, STREAM_GROUP, STREAM_LUT, STREAM_OCAP, STREAM_OUTLIERS, STREAM_PARAMS,
  STREAM_PARAMS_HEAD_STRIDE, STREAM_QLEN, STREAM_RING, STREAM_RING_SIZE, STREAM_ROPE, STREAM_ROW_BYTES, STREAM_SINK_ROWS,
  STREAM_SINKS,
} from '../src/kernels/abi';

const Q_DONE: usize = <usize>CTRL_DONE << 2;
const Q_NEXT: usize = <usize>CTRL_NEXT << 2;
const Q_ARGS: usize = <usize>ARGS;
const QB: i32 = QATT_TILE; // slots per decoded tile

/** OP_QUANT_ATTENTION jobs (dispatched by `run` in index.ts). */
export function quantAttentionJob(ctrl: usize, thread: i32): i32 {
  const a = ctrl + Q_ARGS;
  const n = load<i32>(a, QATT_N);
  const numHeads = load<i32>(a, QATT_NUM_HEADS);
  const numKv = load<i32>(a, QATT_NUM_KV_HEADS);
  const hg = load<i32>(a, QATT_HEAD_GROUP);
  const received = load<u32>(a, QATT_RECEIVED);
  const splits = load<i32>(a, QATT_SPLITS);
  const group = numHeads / numKv;
  const subs = (group + hg - 1) / hg;
  if (splits > 1) {
    // one query (decode): items are (KV head, head group, slot range); partial softmax sums are merged
    // by the caller (src/kernels/wasm.ts)
    const seen = load<i32>(a, QATT_VISIBLE);
    const chunk = ((seen + splits - 1) / splits + QB - 1) / QB * QB;
    const total = numKv * subs * splits;
    for (;;) {
      const it = atomic.add<i32>(ctrl + Q_NEXT, 1);
      if (it >= total) break;
      const part = it % splits;
      const gi = it / splits;
      const kvh = gi / subs;
      const h0 = kvh * group + (gi % subs) * hg;
      const h1 = min(h0 + hg, (kvh + 1) * group);
      const lo = min(seen, part * chunk);
      qattendItem(a, thread, 0, kvh, h0, h1, lo, min(seen, lo + chunk), it);
      atomic.add<i32>(ctrl + Q_DONE, 1);
    }
    return total;
  }
  const perT = numKv * subs;
  const allT = received != 0;
  const items = allT ? perT : n * perT;
  for (;;) {
    const it = atomic.add<i32>(ctrl + Q_NEXT, 1);
    if (it >= items) break;
    const rem = it % perT;
    const kvh = rem / subs;
    const sub = rem % subs;
    const h0 = kvh * group + sub * hg;
    const h1 = min(h0 + hg, (kvh + 1) * group);
    if (allT) {
      for (let t = 0; t < n; t++) qattendItem(a, thread, t, kvh, h0, h1, 0, load<i32>(a, QATT_VISIBLE) + t, -1);
    } else {
      const t = it / perT;
      qattendItem(a, thread, t, kvh, h0, h1, 0, load<i32>(a, QATT_VISIBLE) + t, -1);
    }
    atomic.add<i32>(ctrl + Q_DONE, 1);
  }
  return items;
}

// @ts-ignore: decorator
@inline function h2fs(h: u32): f32 {
  const em = h & 0x7fff;
  let v = reinterpret<f32>(em << 13) * reinterpret<f32>(0x77800000); // × 2^112 rebases the exponent
  if (em >= 0x7c00) v = reinterpret<f32>(0x7f800000 | ((em & 0x3ff) << 13));
  return reinterpret<f32>(reinterpret<u32>(v) | ((h & 0x8000) << 16));
}

function f16Row(dst: usize, src: usize, d: i32): void {
  for (let i = 0; i < d; i++) store<f32>(dst + (<usize>i << 2), h2fs(<u32>load<u16>(src + (<usize>i << 1))));
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

/** LUT values of a packed row's codes into dst (whole 64-code chunks: may write up to 63 floats past d). */
function decodeCodes(dst: usize, p: usize, bits: i32, d: i32, p0: v128, p1: v128, p2: v128, p3: v128): void {
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
    } else if (bits == 4) {
      const m = i8x16.splat(15);
      const b0 = v128.load(p);
      const b1 = v128.load(p, 16);
      lutStore(o, v128.and(b0, m), p0, p1, p2, p3);
      lutStore(o + 64, i8x16.shr_u(b0, 4), p0, p1, p2, p3);
      lutStore(o + 128, v128.and(b1, m), p0, p1, p2, p3);
      lutStore(o + 192, i8x16.shr_u(b1, 4), p0, p1, p2, p3);
    } else if (bits == 2) {
      const m = i8x16.splat(3);
      const b = v128.load(p);
      lutStore(o, v128.and(b, m), p0, p1, p2, p3);
      lutStore(o + 64, v128.and(i8x16.shr_u(b, 2), m), p0, p1, p2, p3);
      lutStore(o + 128, v128.and(i8x16.shr_u(b, 4), m), p0, p1, p2, p3);
      lutStore(o + 192, i8x16.shr_u(b, 6), p0, p1, p2, p3);
    } else {
      const m = i8x16.splat(3);
      const four = i8x16.splat(4);
      const z = i8x16.splat(0);
      const b = v128.load(p);
      const hb = v128.load64_splat(p + 16); // lanes j and j+8 both hold high-bit byte j
      const c0v = v128.or(v128.and(b, m), v128.and(i8x16.ne(v128.and(hb, i8x16(1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2)), z), four));
      const c1v = v128.or(v128.and(i8x16.shr_u(b, 2), m), v128.and(i8x16.ne(v128.and(hb, i8x16(4, 4, 4, 4, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 8)), z), four));
      const c2v = v128.or(v128.and(i8x16.shr_u(b, 4), m), v128.and(i8x16.ne(v128.and(hb, i8x16(16, 16, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32, 32, 32)), z), four));
      const c3v = v128.or(i8x16.shr_u(b, 6), v128.and(i8x16.ne(v128.and(hb, i8x16(64, 64, 64, 64, 64, 64, 64, 64, -128, -128, -128, -128, -128, -128, -128, -128)), z), four));
      lutStore(o, c0v, p0, p1, p2, p3);
      lutStore(o + 64, c1v, p0, p1, p2, p3);
      lutStore(o + 128, c2v, p0, p1, p2, p3);
      lutStore(o + 192, c3v, p0, p1, p2, p3);
    }
    p += cb;
  }
}

/**
 * Decodes slots [s0, s0+bs) of KV head kvh of a stream into tile rows of d floats. chS/chZ: d floats of
 * scratch for channel-axis scales.
 */
function decodeTile(tile: usize, desc: usize, a: usize, kvh: i32, s0: i32, bs: i32, chS: usize, chZ: usize): void {
  const cap = load<i32>(a, QATT_CAPACITY);
  const d = load<i32>(a, QATT_HEAD_DIM);
  const positions = <usize>load<u32>(a, QATT_POSITIONS);
  const codes = <usize>load<u32>(desc, STREAM_CODES);
  const bits = load<i32>(desc, STREAM_BITS);
  const lut = <usize>load<u32>(desc, STREAM_LUT);
  const axis = load<i32>(desc, STREAM_AXIS);
  const group = load<i32>(desc, STREAM_GROUP);
  const params = <usize>load<u32>(desc, STREAM_PARAMS) + <usize>kvh * <usize>load<u32>(desc, STREAM_PARAMS_HEAD_STRIDE);
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
  if (axis == 1 && s0 < qlen) {
    const g = group > 0 ? s0 / group : 0;
    const pp = params + (<usize>g * <usize>d << 2);
    for (let i = 0; i < d; i++) {
      const w = load<u32>(pp + (<usize>i << 2));
      store<f32>(chS + (<usize>i << 2), h2fs(w & 0xffff));
      store<f32>(chZ + (<usize>i << 2), h2fs(w >>> 16));
    }
  }
  const groups = axis == 0 && bits != 16 ? (d + group - 1) / group : 0;
  for (let r = 0; r < bs; r++) {
    const s = s0 + r;
    const row = tile + <usize>r * db;
    const slot = <usize>kvh * <usize>cap + <usize>s;
    if (s >= qlen) {
      f16Row(row, ring + ((<usize>kvh * <usize>ringN + <usize>(s % ringN)) * <usize>d << 1), d);
      continue;
    }
    decodeCodes(row, codes + slot * rb, bits, d, p0, p1, p2, p3);
    if (bits == 16) {
      // bfloat16 rows are the numbers themselves
    } else if (axis == 0) {
      const pp = params + (<usize>s * <usize>groups << 2);
      for (let g = 0; g < groups; g++) {
        const w = load<u32>(pp + (<usize>g << 2));
        const sc = h2fs(w & 0xffff), ze = h2fs(w >>> 16);
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
        if (ch < d) store<f32>(row + (<usize>ch << 2), h2fs(w & 0xffff));
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
      const hp = hi + (<usize>(pos >> 6) * hb << 1);
      let j = 0;
      // half layout: pairs (j, j+half)
      for (; j < h4; j += 4) {
        const o = <usize>j << 2;
        const cl = v128.load(lp + o), sl = v128.load(lp + hb + o), ch = v128.load(hp + o), sh = v128.load(hp + hb + o);
        const c = f32x4.sub(f32x4.mul(cl, ch), f32x4.mul(sl, sh));
        const sn = f32x4.add(f32x4.mul(sl, ch), f32x4.mul(cl, sh));
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

// @ts-ignore: decorator
@inline function qhsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 1, 4, 5), v128.shuffle<f32>(a, b, 2, 3, 6, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 1, 4, 5), v128.shuffle<f32>(c, d, 2, 3, 6, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 2, 4, 6), v128.shuffle<f32>(ab, cd, 1, 3, 5, 7));
}

function qdot(a: usize, b: usize, d: i32): f32 {
  let acc = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= d; i += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(a + (<usize>i << 2)), v128.load(b + (<usize>i << 2))));
  let s = f32x4.extract_lane(acc, 0) + f32x4.extract_lane(acc, 1) + f32x4.extract_lane(acc, 2) + f32x4.extract_lane(acc, 3);
  for (; i < d; i++) s += load<f32>(a + (<usize>i << 2)) * load<f32>(b + (<usize>i << 2));
  return s;
}

/** dst[s] = scale · (q · tile_s), 4 slots per pass. */
function scoreTile(q: usize, k: usize, d: i32, bs: i32, dst: usize, scale: f32): void {
  const db = <usize>d << 2;
  const d4 = d & ~3;
  let s = 0;
  if (d4 == d) {
    const sc = f32x4.splat(scale);
    for (; s + 4 <= bs; s += 4) {
      const k0 = k + <usize>s * db, k1 = k0 + db, k2 = k1 + db, k3 = k2 + db;
      let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
      for (let i = 0; i < d; i += 4) {
        const o = <usize>i << 2;
        const qv = v128.load(q + o);
        a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + o)));
        a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + o)));
        a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + o)));
        a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + o)));
      }
      v128.store(dst + (<usize>s << 2), f32x4.mul(qhsum4(a0, a1, a2, a3), sc));
    }
  }
  for (; s < bs; s++) store<f32>(dst + (<usize>s << 2), qdot(q, k + <usize>s * db, d) * scale);
}

/** acc[d] += Σ_s p[s] · tile_s, 16 accumulators in registers while the slots stream by. */
function axpyTile(acc: usize, p: usize, v: usize, d: i32, bs: i32): void {
  const db = <usize>d << 2;
  let i = 0;
  for (; i + 16 <= d; i += 16) {
    const o = <usize>i << 2;
    let a0 = v128.load(acc + o), a1 = v128.load(acc + o, 16), a2 = v128.load(acc + o, 32), a3 = v128.load(acc + o, 48);
    for (let s = 0; s < bs; s++) {
      const vr = v + <usize>s * db + o;
      const P = v128.load32_splat(p + (<usize>s << 2));
      a0 = f32x4.add(a0, f32x4.mul(P, v128.load(vr)));
      a1 = f32x4.add(a1, f32x4.mul(P, v128.load(vr, 16)));
      a2 = f32x4.add(a2, f32x4.mul(P, v128.load(vr, 32)));
      a3 = f32x4.add(a3, f32x4.mul(P, v128.load(vr, 48)));
    }
    v128.store(acc + o, a0);
    v128.store(acc + o, a1, 16);
    v128.store(acc + o, a2, 32);
    v128.store(acc + o, a3, 48);
  }
  for (; i + 4 <= d; i += 4) {
    const o = <usize>i << 2;
    let a = v128.load(acc + o);
    for (let s = 0; s < bs; s++) a = f32x4.add(a, f32x4.mul(v128.load32_splat(p + (<usize>s << 2)), v128.load(v + <usize>s * db + o)));
    v128.store(acc + o, a);
  }
  for (; i < d; i++) {
    const o = <usize>i << 2;
    let x = load<f32>(acc + o);
    for (let s = 0; s < bs; s++) x += load<f32>(p + (<usize>s << 2)) * load<f32>(v + <usize>s * db + o);
    store<f32>(acc + o, x);
  }
}

// @ts-ignore: decorator
@inline function qexp4(x: v128): v128 {
  // e^x = 2^k · 2^f with k = round(x·log2 e), |f| ≤ 1/2, 2^f by its Taylor series to degree 6
  // (error < 2e-7). x = -inf (padding) clamps to k = -127: exponent bits 0, i.e. 0.
  const t = f32x4.max(f32x4.mul(x, f32x4.splat(1.4426950408889634)), f32x4.splat(-127));
  const k = f32x4.nearest(t);
  const f = f32x4.sub(t, k);
  let p = f32x4.splat(1.5403530393381608e-4);
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(1.3333558146428443e-3));
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(9.618129107628477e-3));
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(5.550410866482158e-2));
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(2.402265069591007e-1));
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(6.931471805599453e-1));
  p = f32x4.add(f32x4.mul(p, f), f32x4.splat(1));
  const e = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(k), i32x4.splat(127)), 23);
  return f32x4.mul(p, e);
}

/**
 * Attention of query t for heads [h0, h1) over slots [lo, hi). part < 0: a whole view, normalised into
 * `out` (and lastProbs/received). part ≥ 0: writes [max, sum, Σ e^(s−max)·v (d)] per head to the partial
 * buffer at item `part` for the caller to merge.
 */
function qattendItem(a: usize, thread: i32, t: i32, kvh: i32, h0: i32, h1: i32, lo: i32, hi: i32, part: i32): void {
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

  const g = h1 - h0;
  const seen = hi - lo; // slots in this item's range
  const sp = (seen + 3) & ~3;
  void visible;
  const db = <usize>d << 2;
  const scores = scratch;
  const tile = scores + (<usize>hg * <usize>sp << 2);
  const acc = tile + ((<usize>QB * <usize>d + 64) << 2);
  const invs = acc + <usize>hg * db;
  const chS = invs + (<usize>(hg + 4) << 2);
  const chZ = chS + db;
  const last = lastProbs != 0 && t == n - 1;

  for (let s0 = 0; s0 < seen; s0 += QB) {
    const bs = min(QB, seen - s0);
    decodeTile(tile, descK, a, kvh, lo + s0, bs, chS, chZ);
    for (let j = 0; j < g; j++) {
      scoreTile(q + (<usize>(t * numHeads + h0 + j) * db), tile, d, bs, scores + ((<usize>j * <usize>sp + <usize>s0) << 2), scale);
    }
  }
  const partial = <usize>load<u32>(a, QATT_PARTIAL) + (<usize>part * <usize>hg * <usize>(d + 2) << 2);
  for (let j = 0; j < g; j++) {
    const row = scores + (<usize>j * <usize>sp << 2);
    for (let s = seen; s < sp; s++) store<f32>(row + (<usize>s << 2), -Infinity);
    let mv = f32x4.splat(-Infinity);
    for (let s = 0; s < sp; s += 4) mv = f32x4.max(mv, v128.load(row + (<usize>s << 2)));
    const m = f32x4.splat(max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3))));
    let sum = f64x2.splat(0);
    for (let s = 0; s < sp; s += 4) {
      const p = row + (<usize>s << 2);
      const e = qexp4(f32x4.sub(v128.load(p), m));
      v128.store(p, e);
      sum = f64x2.add(sum, f64x2.add(f64x2.promote_low_f32x4(e), f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 0, 1))));
    }
    const total = f64x2.extract_lane(sum, 0) + f64x2.extract_lane(sum, 1);
    store<f32>(invs + (<usize>j << 2), total > 0 ? <f32>(1 / total) : 0);
    if (part >= 0) {
      store<f32>(partial + (<usize>j * <usize>(d + 2) << 2), seen > 0 ? f32x4.extract_lane(m, 0) : -Infinity);
      store<f32>(partial + (<usize>j * <usize>(d + 2) << 2), <f32>total, 4);
    }
  }
  memory.fill(acc, 0, <usize>g * db);
  for (let s0 = 0; s0 < seen; s0 += QB) {
    const bs = min(QB, seen - s0);
    decodeTile(tile, descV, a, kvh, lo + s0, bs, chS, chZ);
    for (let j = 0; j < g; j++) axpyTile(acc + <usize>j * db, scores + ((<usize>j * <usize>sp + <usize>s0) << 2), tile, d, bs);
  }
  if (part >= 0) {
    for (let j = 0; j < g; j++) memory.copy(partial + ((<usize>j * <usize>(d + 2) + 2) << 2), acc + <usize>j * db, db);
    return;
  }
  for (let j = 0; j < g; j++) {
    const h = h0 + j;
    const inv = load<f32>(invs + (<usize>j << 2));
    const ap = acc + <usize>j * db;
    const op = out + (<usize>(t * numHeads + h) * db);
    for (let i = 0; i < d; i++) store<f32>(op + (<usize>i << 2), load<f32>(ap + (<usize>i << 2)) * inv);
    const row = scores + (<usize>j * <usize>sp << 2);
    if (received != 0) {
      const rp = received + (<usize>h * <usize>capacity << 2);
      for (let s = 0; s < seen; s++) {
        const o = <usize>s << 2;
        store<f32>(rp + o, load<f32>(rp + o) + load<f32>(row + o) * inv);
      }
    }
    if (last) {
      const lp = lastProbs + (<usize>h * <usize>capacity << 2);
      for (let s = 0; s < seen; s++) store<f32>(lp + (<usize>s << 2), load<f32>(row + (<usize>s << 2)) * inv);
      if (capacity > seen) memory.fill(lp + (<usize>seen << 2), 0, <usize>(capacity - seen) << 2);
    }
  }
}
