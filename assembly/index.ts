// kvpack SIMD kernels. All buffers are raw byte offsets into the one shared memory; nothing here
// allocates. Threaded kernels (matmul, attention) read their arguments from a control block and take
// work items from an atomic counter in it, so every thread runs the same `run(ctrl, thread)`.

import {
  ARGS, BLOCK_SCRATCH, CTRL_DONE, CTRL_NEXT, CTRL_OP, DT_BF16, DT_F16, DT_F32, DT_Q8_0,
  OP_ATTENTION, OP_MATMUL, OP_QUANT_ATTENTION, OP_QUANTIZE, OP_READ, READ_BYTES, READ_CHUNK, READ_OUT, READ_SRC,
  MATMUL_CHUNK, MATMUL_COLS, MATMUL_DTYPE, MATMUL_N, MATMUL_PART, MATMUL_PART_BYTES, MATMUL_PARTS, MATMUL_SCRATCH, MATMUL_SCRATCH_STRIDE,
  MATMUL_X, PART_OUT, PART_ROWS, PART_W,
  ATT_BLOCK, ATT_CAPACITY, ATT_F16, ATT_HEAD_DIM, ATT_HEAD_GROUP, ATT_KEYS, ATT_LAST_PROBS, ATT_MASK, ATT_N, ATT_NUM_HEADS,
  ATT_NUM_KV_HEADS, ATT_OUT, ATT_PARTIAL, ATT_Q, ATT_QUERY_BLOCK, ATT_SPLITS, ATT_RECEIVED, ATT_SCALE, ATT_SCRATCH, ATT_SCRATCH_STRIDE, ATT_VALUES, ATT_VISIBLE,
} from '../src/kernels/abi';
import { attentionItems } from './items';
import { quantAttentionJob } from './quant';
import { quantizeJob } from './quantize';
import { h2f, h2fScalar } from './half';
import { activationSpan, blockRowBytes, blockRowDot, dequantizeBlockRow, isBlockType, prepareActivations, preparedBytes } from './ggml';

// The control block, op codes and argument offsets come from src/kernels/abi.ts (shared with the TS side).
const C_DONE: usize = <usize>CTRL_DONE << 2; // atomic count of finished work items
const C_OP: usize = <usize>CTRL_OP << 2;
const C_NEXT: usize = <usize>CTRL_NEXT << 2; // atomic work-item counter
const C_ARGS: usize = <usize>ARGS;

/** First byte after the module's static data: the JS arena allocates from here. */
export function heapBase(): usize {
  return __heap_base;
}

/** The one job dispatcher. Takes and runs work items of the job in `ctrl` until none is left; returns the job's item count
 *  (the caller waits until DONE reaches it, not for every thread to check in). */
export function run(ctrl: usize, thread: i32): i32 {
  const op = load<i32>(ctrl + C_OP);
  if (op == OP_MATMUL) return matmulJob(ctrl, thread);
  if (op == OP_ATTENTION) return attentionJob(ctrl, thread);
  if (op == OP_QUANT_ATTENTION) return quantAttentionJob(ctrl, thread);
  if (op == OP_QUANTIZE) return quantizeJob(ctrl, thread);
  if (op == OP_READ) return readJob(ctrl);
  return 0;
}

/** OP_READ: each work item XORs the 16-byte blocks of one chunk (4 independent loads per step). */
function readJob(ctrl: usize): i32 {
  const a = ctrl + C_ARGS;
  const src = <usize>load<u32>(a, READ_SRC);
  const bytes = load<i32>(a, READ_BYTES);
  const chunk = load<i32>(a, READ_CHUNK);
  const items = (bytes + chunk - 1) / chunk;
  for (;;) {
    const it = atomic.add<i32>(ctrl + C_NEXT, 1);
    if (it >= items) break;
    let p = src + <usize>it * <usize>chunk;
    const end = src + <usize>min(bytes, (it + 1) * chunk);
    let x0 = i32x4.splat(0), x1 = x0, x2 = x0, x3 = x0;
    for (; p < end; p += 64) {
      x0 = v128.xor(x0, v128.load(p));
      x1 = v128.xor(x1, v128.load(p, 16));
      x2 = v128.xor(x2, v128.load(p, 32));
      x3 = v128.xor(x3, v128.load(p, 48));
    }
    v128.store(<usize>load<u32>(a, READ_OUT) + (<usize>it << 4), v128.xor(v128.xor(x0, x1), v128.xor(x2, x3)));
    atomic.add<i32>(ctrl + C_DONE, 1);
  }
  return items;
}

// ================================================================ conversions

/** Fast f16 → f32 of halves 0..3 / 4..7 of a vector of 8 halves (hot loops). Per 16-bit lane,
 *  (h >> 3 arithmetic) & 0x8fff is the upper half of sign | (h & 0x7fff) << 13 and h << 13 its lower
 *  half; interleaving them gives that f32 bit pattern, and the multiply by 2^112 rebases the exponent
 *  (normalising subnormals) keeping the sign. The 16-bit steps are shared by both halves (CSE).
 *  Unlike h2f, inf/NaN halves decode as finite ±65536·(1+m); weights and cached keys/values never
 *  hold them (toF16 overflow is the only source). */
// @ts-ignore: decorator
@inline function h2fLo(v: v128): v128 {
  const hp = v128.and(i16x8.shr_s(v, 3), i16x8.splat(<i16>0x8fff));
  const lp = i16x8.shl(v, 13);
  return f32x4.mul(i16x8.shuffle(lp, hp, 0, 8, 1, 9, 2, 10, 3, 11), f32x4.splat(reinterpret<f32>(0x77800000)));
}
// @ts-ignore: decorator
@inline function h2fHi(v: v128): v128 {
  const hp = v128.and(i16x8.shr_s(v, 3), i16x8.splat(<i16>0x8fff));
  const lp = i16x8.shl(v, 13);
  return f32x4.mul(i16x8.shuffle(lp, hp, 4, 12, 5, 13, 6, 14, 7, 15), f32x4.splat(reinterpret<f32>(0x77800000)));
}

/** Even / odd halves of 8 (lanes 0, 2, 4, 6 / 1, 3, 5, 7) without the multiply: the f32 bits of
 *  half · 2^-112 (see dotF16s). Each 32-bit lane holds an even half below an odd one; an arithmetic
 *  shift right by 3 puts the odd half's exponent and mantissa in f32 position with its sign on top
 *  (the even half first moves up by 16), and the mask clears the copies of the sign below it and
 *  whatever the shift brought in beneath the 10 mantissa bits. */
// @ts-ignore: decorator
@inline function h2fEven(v: v128): v128 {
  return v128.and(i32x4.shr_s(i32x4.shl(v, 16), 3), i32x4.splat(0x8fffe000));
}
// @ts-ignore: decorator
@inline function h2fOdd(v: v128): v128 {
  return v128.and(i32x4.shr_s(v, 3), i32x4.splat(0x8fffe000));
}

/** Attention blocks: f16 slots to f32 with the fast conversion (len a multiple of 8 or tail scalar). */
function convertF16Fast(dst: usize, src: usize, len: i32): void {
  let k = 0;
  for (; k + 8 <= len; k += 8) {
    const v = v128.load(src + (<usize>k << 1));
    const o = dst + (<usize>k << 2);
    v128.store(o, h2fLo(v), 0);
    v128.store(o, h2fHi(v), 16);
  }
  for (; k < len; k++) store<f32>(dst + (<usize>k << 2), h2fScalar(load<u16>(src + (<usize>k << 1))));
}

// @ts-ignore: decorator
@inline function bf2fLo(v: v128): v128 {
  return i16x8.shuffle(i16x8.splat(0), v, 0, 8, 1, 9, 2, 10, 3, 11);
}
// @ts-ignore: decorator
@inline function bf2fHi(v: v128): v128 { // lanes as punpckhwd with zero (V8 emits one instruction)
  return i16x8.shuffle(i16x8.splat(0), v, 4, 12, 5, 13, 6, 14, 7, 15);
}

/** Sums of the lanes of a, b, c, d as one vector [Σa, Σb, Σc, Σd]. */
// @ts-ignore: decorator
@inline function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 4, 1, 5), v128.shuffle<f32>(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 4, 1, 5), v128.shuffle<f32>(c, d, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 1, 4, 5), v128.shuffle<f32>(ab, cd, 2, 3, 6, 7));
}

// @ts-ignore: decorator
@inline function hsum(a: v128): f32 {
  const b = f32x4.add(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(b, 0) + f32x4.extract_lane(b, 1);
}

/** Bytes of one stored row of `cols` numbers. */
function rowBytes(dt: i32, cols: i32): usize {
  if (isBlockType(dt)) return blockRowBytes(dt, cols);
  if (dt == DT_F32) return <usize>cols << 2;
  if (dt == DT_Q8_0) return <usize>(cols >> 5) * 34;
  return <usize>cols << 1;
}

/** dst[cols] (f32) = row src (stored dtype). */
function convertRow(dst: usize, src: usize, dt: i32, cols: i32): void {
  if (dt == DT_F32) {
    memory.copy(dst, src, <usize>cols << 2);
    return;
  }
  let k = 0;
  if (dt == DT_Q8_0) {
    for (; k < cols; k += 32) {
      const p = src + <usize>(k >> 5) * 34;
      const d = f32x4.splat(h2fScalar(load<u16>(p)));
      const v0 = v128.load(p, 2);
      const v1 = v128.load(p, 18);
      const o = dst + (<usize>k << 2);
      const l0 = i16x8.extend_low_i8x16_s(v0);
      const h0 = i16x8.extend_high_i8x16_s(v0);
      const l1 = i16x8.extend_low_i8x16_s(v1);
      const h1 = i16x8.extend_high_i8x16_s(v1);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l0)), d), 0);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l0)), d), 16);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h0)), d), 32);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h0)), d), 48);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l1)), d), 64);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l1)), d), 80);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h1)), d), 96);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h1)), d), 112);
    }
    return;
  }
  const c8 = cols & ~7;
  if (dt == DT_F16) {
    for (; k < c8; k += 8) {
      const v = v128.load(src + (<usize>k << 1));
      const o = dst + (<usize>k << 2);
      v128.store(o, h2f(i32x4.extend_low_i16x8_u(v)), 0);
      v128.store(o, h2f(i32x4.extend_high_i16x8_u(v)), 16);
    }
    for (; k < cols; k++) store<f32>(dst + (<usize>k << 2), h2fScalar(load<u16>(src + (<usize>k << 1))));
  } else {
    for (; k < c8; k += 8) {
      const v = v128.load(src + (<usize>k << 1));
      const o = dst + (<usize>k << 2);
      v128.store(o, bf2fLo(v), 0);
      v128.store(o, bf2fHi(v), 16);
    }
    for (; k < cols; k++) store<u32>(dst + (<usize>k << 2), <u32>load<u16>(src + (<usize>k << 1)) << 16);
  }
}

// ================================================================ matmul

/** Work items are `chunk` rows of one part, the parts' items one after the other. */
function matmulJob(ctrl: usize, thread: i32): i32 {
  const a = ctrl + C_ARGS;
  const x = load<u32>(a, MATMUL_X);
  const dt = load<i32>(a, MATMUL_DTYPE);
  const cols = load<i32>(a, MATMUL_COLS);
  const n = load<i32>(a, MATMUL_N);
  const chunk = load<i32>(a, MATMUL_CHUNK);
  const parts = load<i32>(a, MATMUL_PARTS);
  const scratch = <usize>load<u32>(a, MATMUL_SCRATCH) + <usize>thread * <usize>load<u32>(a, MATMUL_SCRATCH_STRIDE);
  let items = 0;
  for (let p = 0; p < parts; p++) items += (load<i32>(a + MATMUL_PART + <usize>p * MATMUL_PART_BYTES, PART_ROWS) + chunk - 1) / chunk;
  // n = 1: x is prepared in this thread's scratch once, at its first item (-1: not yet)
  let prepared = -1;
  for (;;) {
    let it = atomic.add<i32>(ctrl + C_NEXT, 1);
    if (it >= items) break;
    // find the item's part
    let part = a + MATMUL_PART;
    let rows = load<i32>(part, PART_ROWS);
    for (let pi = (rows + chunk - 1) / chunk; it >= pi; pi = (rows + chunk - 1) / chunk) {
      it -= pi;
      part += MATMUL_PART_BYTES;
      rows = load<i32>(part, PART_ROWS);
    }
    const out = load<u32>(part, PART_OUT);
    const w = load<u32>(part, PART_W);
    const r0 = it * chunk;
    const r1 = min(rows, r0 + chunk);
    if (n == 1) {
      if (prepared < 0) prepared = prepareX(scratch, x, dt, cols) ? 1 : 0;
      matvecRows(out, x, w, dt, cols, r0, r1, scratch, prepared == 1);
    } else {
      matmulRows(out, x, w, dt, rows, cols, n, r0, r1, scratch);
    }
    atomic.add<i32>(ctrl + C_DONE, 1);
  }
  return items;
}

/** What a matvec reads of x besides x itself, written once per job into this thread's scratch: the
 *  block types' prepared activations, or x · 2^112 for the fast f16 rows (false when x is too large
 *  for that; there is no scratch for other dtypes). */
function prepareX(scratch: usize, x: usize, dt: i32, cols: i32): bool {
  if (scratch == 0) return false;
  if (isBlockType(dt)) {
    prepareActivations(scratch, x, cols, activationSpan(dt));
    return true;
  }
  return dt == DT_F16 && prescaleX(scratch, x, cols);
}

/** out[r0..r1) = W[r0..r1) · x for one token, straight from the stored dtype, with x `prepared` by
 *  prepareX. Float rows are read one at a time, front to back: one stream for the prefetcher, and
 *  few live registers (V8 has 16); this ran 1.5-2x as fast as 4 interleaved rows. Each row's sum
 *  is the same either way. */
function matvecRows(out: usize, x: usize, w: usize, dt: i32, cols: i32, r0: i32, r1: i32, scratch: usize, prepared: bool): void {
  const rb = rowBytes(dt, cols);
  if (isBlockType(dt)) {
    // scratch: this thread's prepared activations, then one decoded block
    const block = scratch + ((preparedBytes(cols) + 15) & ~15);
    for (let r = r0; r < r1; r++) store<f32>(out + (<usize>r << 2), blockRowDot(w + <usize>r * rb, dt, x, scratch, cols, block));
    return;
  }
  if (dt == DT_F32) {
    for (let r = r0; r < r1; r++) store<f32>(out + (<usize>r << 2), dotF32(w + <usize>r * rb, x, cols));
    return;
  }
  if (dt == DT_F16 && prepared) {
    for (let r = r0; r < r1; r++) store<f32>(out + (<usize>r << 2), dotF16s(w + <usize>r * rb, scratch, x, cols));
    return;
  }
  if (dt == DT_F16) {
    for (let r = r0; r < r1; r++) store<f32>(out + (<usize>r << 2), dotHalves(w + <usize>r * rb, x, cols, false));
    return;
  }
  if (dt == DT_BF16) {
    for (let r = r0; r < r1; r++) store<f32>(out + (<usize>r << 2), dotHalves(w + <usize>r * rb, x, cols, true));
    return;
  }
  let r = r0;
  for (; r + 4 <= r1; r += 4) v128.store(out + (<usize>r << 2), mv4Q8(w + <usize>r * rb, rb, x, cols));
  for (; r < r1; r++) store<f32>(out + (<usize>r << 2), f32x4.extract_lane(mv4Q8(w + <usize>r * rb, 0, x, cols), 0));
}

/** a · b over len floats: lanes k % 8 < 4 and ≥ 4 in two sums, their lanes added as hsum4 does,
 *  then the scalar tail (summed apart) — the same arithmetic per row as the 4-row kernels. */
function dotF32(a: usize, b: usize, len: i32): f32 {
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let k = 0;
  for (; k + 16 <= len; k += 16) {
    const o = <usize>k << 2;
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a + o), v128.load(b + o)));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(a + o, 16), v128.load(b + o, 16)));
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a + o, 32), v128.load(b + o, 32)));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(a + o, 48), v128.load(b + o, 48)));
  }
  for (; k + 8 <= len; k += 8) {
    const o = <usize>k << 2;
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a + o), v128.load(b + o)));
    s1 = f32x4.add(s1, f32x4.mul(v128.load(a + o, 16), v128.load(b + o, 16)));
  }
  for (; k + 4 <= len; k += 4) {
    const o = <usize>k << 2;
    s0 = f32x4.add(s0, f32x4.mul(v128.load(a + o), v128.load(b + o)));
  }
  const s = hsum(f32x4.add(s0, s1));
  if (k == len) return s;
  let t: f32 = 0;
  for (; k < len; k++) t += load<f32>(a + (<usize>k << 2)) * load<f32>(b + (<usize>k << 2));
  return s + t;
}

/** Scalar tails of four rows (cols not a multiple of the vector step) added into lane sums. */
// @ts-ignore: decorator
@inline function tail4(v: v128, s0: f32, s1: f32, s2: f32, s3: f32): v128 {
  return f32x4.add(v, f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(s0), 1, s1), 2, s2), 3, s3));
}

/** One f16 (x too large to prescale) or bf16 row · x: 8 halves per 16-byte load, widened in
 *  registers, summed as dotF32 sums. */
function dotHalves(w: usize, x: usize, cols: i32, bf16: bool): f32 {
  let a = f32x4.splat(0), b = a;
  let k = 0;
  for (; k + 8 <= cols; k += 8) {
    const v = v128.load(w + (<usize>k << 1));
    const xo = x + (<usize>k << 2);
    a = f32x4.add(a, f32x4.mul(bf16 ? bf2fLo(v) : h2fLo(v), v128.load(xo)));
    b = f32x4.add(b, f32x4.mul(bf16 ? bf2fHi(v) : h2fHi(v), v128.load(xo, 16)));
  }
  const s = hsum(f32x4.add(a, b));
  if (k == cols) return s;
  let t: f32 = 0;
  for (; k < cols; k++) {
    const h = load<u16>(w + (<usize>k << 1));
    t += (bf16 ? reinterpret<f32>(<u32>h << 16) : h2fScalar(h)) * load<f32>(x + (<usize>k << 2));
  }
  return s + t;
}

/** dst[0..cols&~7) = x · 2^112 (exact: a power of two), each 8 numbers stored as the even ones then
 *  the odd ones (the order dotF16s widens halves in), unless some |x| ≥ 2^16 or is NaN, where the
 *  scaled value could overflow: then false and the caller keeps the multiplying kernel. */
function prescaleX(dst: usize, x: usize, cols: i32): bool {
  const c = f32x4.splat(reinterpret<f32>(0x77800000)); // 2^112
  let m = f32x4.splat(0);
  for (let k = 0; k + 8 <= cols; k += 8) {
    const o = <usize>k << 2;
    const a = v128.load(x + o), b = v128.load(x + o, 16);
    // max keeps a NaN; abs of both halves first so -inf counts too
    m = f32x4.max(m, f32x4.max(f32x4.abs(a), f32x4.abs(b)));
    const sa = f32x4.mul(a, c), sb = f32x4.mul(b, c);
    v128.store(dst + o, v128.shuffle<f32>(sa, sb, 0, 2, 4, 6));
    v128.store(dst + o, v128.shuffle<f32>(sa, sb, 1, 3, 5, 7), 16);
  }
  const mm = f32x4.max(m, v128.shuffle<f32>(m, m, 2, 3, 0, 1));
  const top = max(f32x4.extract_lane(mm, 0), f32x4.extract_lane(mm, 1));
  return top < 65536; // false for NaN
}

/** One f16 row · x for prescaled x (xs from prescaleX): each half is widened to the f32 bit pattern
 *  of half · 2^-112 with 5 integer ops per 8 halves (h2fEven / h2fOdd); f16 subnormals land on f32
 *  denormals, exactly. The products xs·w' are then x·w rounded once, as with a converted weight,
 *  without the per-weight multiply by 2^112. The lane sums of the even and odd halves, added as
 *  below, give the same sum as the in-order lanes of the 4-row kernels. Tail columns (cols % 8) use
 *  the unscaled x. */
function dotF16s(w: usize, xs: usize, x: usize, cols: i32): f32 {
  let a = f32x4.splat(0), b = a;
  let k = 0;
  for (; k + 16 <= cols; k += 16) {
    const o = <usize>k << 1;
    const xo = xs + (o << 1);
    let v = v128.load(w + o);
    a = f32x4.add(a, f32x4.mul(h2fEven(v), v128.load(xo)));
    b = f32x4.add(b, f32x4.mul(h2fOdd(v), v128.load(xo, 16)));
    v = v128.load(w + o, 16);
    a = f32x4.add(a, f32x4.mul(h2fEven(v), v128.load(xo, 32)));
    b = f32x4.add(b, f32x4.mul(h2fOdd(v), v128.load(xo, 48)));
  }
  for (; k + 8 <= cols; k += 8) {
    const o = <usize>k << 1;
    const v = v128.load(w + o);
    a = f32x4.add(a, f32x4.mul(h2fEven(v), v128.load(xs + (o << 1))));
    b = f32x4.add(b, f32x4.mul(h2fOdd(v), v128.load(xs + (o << 1), 16)));
  }
  const s = hsum(a) + hsum(b);
  if (k == cols) return s;
  let t: f32 = 0;
  for (; k < cols; k++) t += h2fScalar(load<u16>(w + (<usize>k << 1))) * load<f32>(x + (<usize>k << 2));
  return s + t;
}

function mv4Q8(w0: usize, rb: usize, x: usize, cols: i32): v128 {
  const w1 = w0 + rb, w2 = w1 + rb, w3 = w2 + rb;
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  const nb = cols >> 5;
  for (let b = 0; b < nb; b++) {
    const o = <usize>b * 34;
    const xb = x + (<usize>b << 7);
    // the block's 32 x values, shared by the 4 rows
    const x0 = v128.load(xb), x1 = v128.load(xb, 16), x2 = v128.load(xb, 32), x3 = v128.load(xb, 48);
    const x4 = v128.load(xb, 64), x5 = v128.load(xb, 80), x6 = v128.load(xb, 96), x7 = v128.load(xb, 112);
    a0 = f32x4.add(a0, f32x4.mul(q8dot(w0 + o + 2, x0, x1, x2, x3, x4, x5, x6, x7), f32x4.splat(h2fScalar(load<u16>(w0 + o)))));
    a1 = f32x4.add(a1, f32x4.mul(q8dot(w1 + o + 2, x0, x1, x2, x3, x4, x5, x6, x7), f32x4.splat(h2fScalar(load<u16>(w1 + o)))));
    a2 = f32x4.add(a2, f32x4.mul(q8dot(w2 + o + 2, x0, x1, x2, x3, x4, x5, x6, x7), f32x4.splat(h2fScalar(load<u16>(w2 + o)))));
    a3 = f32x4.add(a3, f32x4.mul(q8dot(w3 + o + 2, x0, x1, x2, x3, x4, x5, x6, x7), f32x4.splat(h2fScalar(load<u16>(w3 + o)))));
  }
  return hsum4(a0, a1, a2, a3);
}

// @ts-ignore: decorator
@inline function q8dot(p: usize, x0: v128, x1: v128, x2: v128, x3: v128, x4: v128, x5: v128, x6: v128, x7: v128): v128 {
  const v0 = v128.load(p);
  const v1 = v128.load(p, 16);
  const l0 = i16x8.extend_low_i8x16_s(v0);
  const h0 = i16x8.extend_high_i8x16_s(v0);
  const l1 = i16x8.extend_low_i8x16_s(v1);
  const h1 = i16x8.extend_high_i8x16_s(v1);
  const s = f32x4.add(
    f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l0)), x0), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l0)), x1)),
    f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h0)), x2), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h0)), x3)),
  );
  const t = f32x4.add(
    f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l1)), x4), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l1)), x5)),
    f32x4.add(f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h1)), x6), f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h1)), x7)),
  );
  return f32x4.add(s, t);
}

/**
 * Chunked prefill: rows [r0, r1) for all n tokens. The chunk's rows are dequantised once into this
 * thread's scratch as quads of rows interleaved per 4 columns (f32 rows are copied the same way), so
 * one pointer walks 4 rows; register tiles of 4 rows × 2 tokens then run over them, each weight
 * converted once and reused by every token.
 */
function matmulRows(out: usize, x: usize, w: usize, dt: i32, rows: i32, cols: i32, n: i32, r0: i32, r1: i32, scratch: usize): void {
  const rb = rowBytes(dt, cols);
  const fs = <usize>cols << 2; // f32 row stride
  const qs = fs << 2; // one packed quad of rows
  const nq = (r1 - r0 + 3) >> 2;
  const rowsAt = scratch + <usize>nq * qs; // up to 4 rows converted contiguously before packing
  const block = rowsAt + qs; // block types: one decoded block
  for (let q = 0; q < nq; q++) {
    const r = r0 + (q << 2);
    const m = min(4, r1 - r);
    let src = rowsAt;
    if (dt == DT_F32) src = w + <usize>r * rb;
    else {
      for (let j = 0; j < m; j++) {
        if (isBlockType(dt)) dequantizeBlockRow(rowsAt + <usize>j * fs, w + <usize>(r + j) * rb, dt, cols, block);
        // f16: the fast widening, as the matvec's (weights hold no inf/NaN)
        else if (dt == DT_F16) convertF16Fast(rowsAt + <usize>j * fs, w + <usize>(r + j) * rb, cols);
        else convertRow(rowsAt + <usize>j * fs, w + <usize>(r + j) * rb, dt, cols);
      }
    }
    packQuad(scratch + <usize>q * qs, src, fs, m, cols);
  }
  const os = <usize>rows << 2;
  for (let t = 0; t < n; t += 2) {
    const xt = x + <usize>t * fs;
    const nt = min(2, n - t);
    const ot = out + <usize>t * os + (<usize>r0 << 2);
    for (let q = 0; q < nq; q++) tile42(scratch + <usize>q * qs, cols, xt, nt == 2 ? xt + fs : xt, ot + (<usize>q << 4), os, min(4, r1 - r0 - (q << 2)), nt);
  }
}

/** m (≤ 4) rows at src (stride fs) → dst: per 4 columns the 4 rows' values one after the other (missing
 *  rows zero), then each row's last cols % 4 values. */
function packQuad(dst: usize, src: usize, fs: usize, m: i32, cols: i32): void {
  const c4 = cols & ~3;
  const z = f32x4.splat(0);
  for (let j = 0; j < 4; j++) {
    const s = src + <usize>j * fs;
    let d = dst + (<usize>j << 4);
    if (j < m) {
      for (let k = 0; k < c4; k += 4, d += 64) v128.store(d, v128.load(s + (<usize>k << 2)));
    } else {
      for (let k = 0; k < c4; k += 4, d += 64) v128.store(d, z);
    }
  }
  const tl = cols - c4;
  const dt = dst + (<usize>c4 << 4);
  for (let j = 0; j < 4; j++) {
    for (let k = 0; k < tl; k++) store<f32>(dt + (<usize>(j * tl + k) << 2), j < m ? load<f32>(src + <usize>j * fs + (<usize>(c4 + k) << 2)) : 0);
  }
}

/** 4 packed rows × 2 tokens (x0, x1): 8 accumulators; each loaded x vector feeds 4 rows. Per output
 *  the same sums in the same order as a plain 4-lane dot product. Stores m rows of nt tokens. */
// @ts-ignore: decorator
@inline function tile42(pw: usize, cols: i32, x0: usize, x1: usize, out: usize, os: usize, m: i32, nt: i32): void {
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  let b0 = a0, b1 = a0, b2 = a0, b3 = a0;
  const c4 = cols & ~3;
  const end = pw + (<usize>c4 << 4);
  const dx = x1 - x0;
  let px = x0;
  for (; pw < end; pw += 64, px += 16) {
    const y = v128.load(px);
    const z = v128.load(px + dx);
    let w = v128.load(pw);
    a0 = f32x4.add(a0, f32x4.mul(w, y));
    b0 = f32x4.add(b0, f32x4.mul(w, z));
    w = v128.load(pw, 16);
    a1 = f32x4.add(a1, f32x4.mul(w, y));
    b1 = f32x4.add(b1, f32x4.mul(w, z));
    w = v128.load(pw, 32);
    a2 = f32x4.add(a2, f32x4.mul(w, y));
    b2 = f32x4.add(b2, f32x4.mul(w, z));
    w = v128.load(pw, 48);
    a3 = f32x4.add(a3, f32x4.mul(w, y));
    b3 = f32x4.add(b3, f32x4.mul(w, z));
  }
  let sa = hsum4(a0, a1, a2, a3); // token 0, rows 0..3
  let sb = hsum4(b0, b1, b2, b3); // token 1, rows 0..3
  const tl = cols - c4;
  if (tl > 0) {
    let p0: f32 = 0, p1: f32 = 0, p2: f32 = 0, p3: f32 = 0;
    let q0: f32 = 0, q1: f32 = 0, q2: f32 = 0, q3: f32 = 0;
    for (let k = 0; k < tl; k++) {
      const y = load<f32>(px + (<usize>k << 2)), z = load<f32>(px + dx + (<usize>k << 2));
      const u0 = load<f32>(pw + (<usize>k << 2)), u1 = load<f32>(pw + (<usize>(tl + k) << 2));
      const u2 = load<f32>(pw + (<usize>(2 * tl + k) << 2)), u3 = load<f32>(pw + (<usize>(3 * tl + k) << 2));
      p0 += u0 * y; p1 += u1 * y; p2 += u2 * y; p3 += u3 * y;
      q0 += u0 * z; q1 += u1 * z; q2 += u2 * z; q3 += u3 * z;
    }
    sa = tail4(sa, p0, p1, p2, p3);
    sb = tail4(sb, q0, q1, q2, q3);
  }
  if (m == 4) {
    v128.store(out, sa);
    if (nt == 2) v128.store(out + os, sb);
    return;
  }
  // a part's last rows: only the m that are there (the next rows belong to another item)
  storeFirst(out, sa, m);
  if (nt == 2) storeFirst(out + os, sb, m);
}

/** Lanes 0..m-1 (m < 4) of s to out. */
function storeFirst(out: usize, s: v128, m: i32): void {
  store<f32>(out, f32x4.extract_lane(s, 0));
  if (m > 1) store<f32>(out, f32x4.extract_lane(s, 1), 4);
  if (m > 2) store<f32>(out, f32x4.extract_lane(s, 2), 8);
}

// ================================================================ elementwise

/** e^x for 4 lanes (Cephes-style range reduction + degree-6 polynomial, ~1-2 ulp). Inputs below the
 *  f32 normal range give 0; inputs above 88 are clamped. */
// @ts-ignore: decorator
@inline function exp4(x: v128): v128 {
  const under = f32x4.lt(x, f32x4.splat(-87.33654));
  // pmin/pmax are one instruction each (min/max are several in V8); they agree for non-NaN x and keep a NaN x
  x = f32x4.pmax(f32x4.pmin(x, f32x4.splat(88.0)), f32x4.splat(-87.33654));
  const fx = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(x, f32x4.mul(fx, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  const r2 = f32x4.mul(r, r);
  let y = f32x4.splat(1.9875691500e-4);
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(1.3981999507e-3));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(8.3334519073e-3));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(4.1665795894e-2));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(1.6666665459e-1));
  y = f32x4.add(f32x4.mul(y, r), f32x4.splat(5.0000001201e-1));
  y = f32x4.add(f32x4.add(f32x4.mul(y, r2), r), f32x4.splat(1.0));
  // 2^fx for the integer fx in [-127, 128]: adding 1.5·2^23 puts fx in the low mantissa bits, so the bits
  // minus those of 1.5·2^23 are fx (cheaper than trunc_sat, which V8 expands to several instructions)
  const pow = i32x4.shl(i32x4.add(f32x4.add(fx, f32x4.splat(12582912.0)), i32x4.splat(127 - 0x4b400000)), 23);
  return v128.andnot(f32x4.mul(y, pow), under);
}

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

/** A decoded block for embed, which runs on the calling thread only. */
const embedScratch = memory.data(<i32>BLOCK_SCRATCH, 16);

export function embed(out: usize, table: usize, dt: i32, cols: i32, ids: usize, n: i32): void {
  const rb = rowBytes(dt, cols);
  for (let t = 0; t < n; t++) {
    const id = load<i32>(ids + (<usize>t << 2));
    if (isBlockType(dt)) dequantizeBlockRow(out + <usize>t * (<usize>cols << 2), table + <usize>id * rb, dt, cols, embedScratch);
    else convertRow(out + <usize>t * (<usize>cols << 2), table + <usize>id * rb, dt, cols);
  }
}

/** 4 f32 to f16 bits (in i32 lanes), round to nearest even; NaN → 0x7e00, overflow → inf. */
// @ts-ignore: decorator
@inline function f2h(v: v128): v128 {
  const sign = i32x4.shr_u(v128.and(v, i32x4.splat(0x80000000)), 16);
  const abs = v128.and(v, i32x4.splat(0x7fffffff));
  // normal: rebias the exponent, then round the 13 dropped bits to nearest even (carries are right)
  let t = i32x4.sub(abs, i32x4.splat(0x38000000));
  t = i32x4.add(t, i32x4.add(i32x4.splat(0xfff), v128.and(i32x4.shr_u(t, 13), i32x4.splat(1))));
  const hn = i32x4.shr_u(t, 13);
  // subnormal: adding 0.5 makes the FPU round |x| to a multiple of 2^-24 (RNE)
  const hs = i32x4.sub(f32x4.add(abs, f32x4.splat(0.5)), i32x4.splat(0x3f000000));
  let h = v128.bitselect(hs, hn, i32x4.lt_s(abs, i32x4.splat(0x38800000)));
  h = v128.bitselect(i32x4.splat(0x7c00), h, i32x4.ge_s(abs, i32x4.splat(0x47800000)));
  h = v128.bitselect(i32x4.splat(0x7e00), h, i32x4.gt_s(abs, i32x4.splat(0x7f800000)));
  return v128.or(h, sign);
}

export function toF16(out: usize, x: usize, len: i32): void {
  let i = 0;
  for (; i + 8 <= len; i += 8) {
    const a = f2h(v128.load(x + (<usize>i << 2)));
    const b = f2h(v128.load(x + (<usize>i << 2), 16));
    v128.store(out + (<usize>i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < len; i++) {
    const h = f2h(f32x4.splat(load<f32>(x + (<usize>i << 2))));
    store<u16>(out + (<usize>i << 1), <u16>i32x4.extract_lane(h, 0));
  }
}

// ================================================================ attention

const BLOCK: i32 = ATT_BLOCK; // slots per block of converted keys/values

/**
 * Work item = (block of up to `qb` queries, KV head, a group of up to `hg` query heads sharing it). Each
 * block of keys and values is converted once (f16 slots) and reused by every query and head of the item;
 * each query only takes the slots it may see. When `received` is accumulated, an item covers all query
 * blocks of its heads (in order) so no two threads add into the same row.
 * Per-thread scratch: scores [qb·hg][seenPad] | block [BLOCK][d] | acc [qb·hg][d] | inv [qb·hg].
 */
function attentionJob(ctrl: usize, thread: i32): i32 {
  const a = ctrl + C_ARGS;
  return attentionItems(ctrl, thread, load<i32>(a, ATT_N), load<i32>(a, ATT_NUM_HEADS), load<i32>(a, ATT_NUM_KV_HEADS),
    load<i32>(a, ATT_HEAD_GROUP), load<i32>(a, ATT_QUERY_BLOCK), load<u32>(a, ATT_RECEIVED) != 0, load<i32>(a, ATT_SPLITS),
    load<i32>(a, ATT_VISIBLE), BLOCK, attendItem);
}

/**
 * Attention of queries [t0, t1) for heads [h0, h1) over slots [lo, hi): query t sees slots below
 * min(hi, visible + t). part < 0: whole views, normalised into `out` (and lastProbs/received). part ≥ 0
 * (one query): writes [max, sum, Σ e^(s−max)·v (d)] per head to the partial buffer at item `part`.
 */
function attendItem(a: usize, thread: i32, t0: i32, t1: i32, kvh: i32, h0: i32, h1: i32, lo: i32, hi: i32, part: i32): void {
  const out = <usize>load<u32>(a, ATT_OUT);
  const q = <usize>load<u32>(a, ATT_Q);
  const n = load<i32>(a, ATT_N);
  const keys = <usize>load<u32>(a, ATT_KEYS);
  const values = <usize>load<u32>(a, ATT_VALUES);
  const f16 = load<i32>(a, ATT_F16) != 0;
  const capacity = load<i32>(a, ATT_CAPACITY);
  // slots seen by query t, counted from lo: visible + t (the range's end caps a one-query item)
  const visible = min(load<i32>(a, ATT_VISIBLE), hi) - lo;
  const numHeads = load<i32>(a, ATT_NUM_HEADS);
  const d = load<i32>(a, ATT_HEAD_DIM);
  const scale = load<f32>(a, ATT_SCALE);
  const lastProbs = <usize>load<u32>(a, ATT_LAST_PROBS);
  const received = <usize>load<u32>(a, ATT_RECEIVED);
  const hg = load<i32>(a, ATT_HEAD_GROUP);
  const qb = load<i32>(a, ATT_QUERY_BLOCK);
  const scratch = <usize>load<u32>(a, ATT_SCRATCH) + <usize>thread * <usize>load<u32>(a, ATT_SCRATCH_STRIDE);
  const mask = <usize>load<u32>(a, ATT_MASK);
  const partial = <usize>load<u32>(a, ATT_PARTIAL) + (<usize>max(part, 0) * <usize>hg * <usize>(d + 2) << 2);

  const g = h1 - h0;
  const rows = (t1 - t0) * g; // row r = (t - t0) · g + head j
  const seenAll = visible + t1 - 1; // slots the last query of the block sees
  const sp = (seenAll + 3) & ~3; // row stride of the scores
  const db = <usize>d << 2; // f32 row bytes
  const eb: usize = f16 ? 2 : 4;
  const rb = <usize>sp << 2; // score row bytes
  const scores = scratch;
  const blk = scores + (<usize>(qb * hg) * rb);
  const acc = blk + <usize>BLOCK * db;
  const invs = acc + <usize>(qb * hg) * db;
  const kvOff = (<usize>kvh * <usize>capacity + <usize>lo) * <usize>d * eb;

  // One query over f16 slots with nothing to report per slot (decode): the halves are widened in
  // registers as they are used, by every head of the group (scoreF16Rows, axpyF16Rows), instead of
  // converted into the block first. Queries are prescaled by 2^112 (prescaleX; none may be ≥ 2^16).
  const qs = invs + (<usize>(qb * hg) << 2); // rows·d prescaled queries
  let fused = f16 && t1 - t0 == 1 && lastProbs == 0 && received == 0 && (d & 7) == 0;
  for (let j = 0; fused && j < g; j++) fused = prescaleX(qs + <usize>j * db, q + (<usize>(t0 * numHeads + h0 + j) * db), d);
  if (fused) {
    for (let j = 0; j < g; j += 3) scoreF16Rows(qs + <usize>j * db, min(3, g - j), keys + kvOff, d, seenAll, scores + <usize>j * rb, rb, scale);
  } else {
    // scores: q·k * scale for each query and head of the item
    for (let s0 = 0; s0 < seenAll; s0 += BLOCK) {
      let kp = keys + kvOff + <usize>s0 * <usize>d * eb;
      if (f16) {
        convertF16Fast(blk, kp, min(BLOCK, seenAll - s0) * d);
        kp = blk;
      }
      // rows (query, head) that see past s0, in pairs sharing each loaded key vector where their slot
      // counts agree (causal: later queries see more)
      for (let r = (max(t0, s0 + 1 - visible) - t0) * g; r < rows; ) {
        const t = t0 + r / g;
        const bs = min(BLOCK, visible + t - s0);
        const qp = q + (<usize>(t * numHeads + h0 + r % g) * db);
        const dst = scores + <usize>r * rb + (<usize>s0 << 2);
        if (r + 1 < rows && min(BLOCK, visible + t0 + (r + 1) / g - s0) == bs) {
          const t2 = t0 + (r + 1) / g;
          scoreBlock2(qp, q + (<usize>(t2 * numHeads + h0 + (r + 1) % g) * db), kp, d, bs, dst, dst + rb, scale);
          r += 2;
        } else {
          scoreBlock(qp, kp, d, bs, dst, scale);
          r++;
        }
      }
    }
  }
  // masked slots (a u8 per head and slot) take no part in the softmax
  if (mask != 0) {
    for (let r = 0; r < rows; r++) {
      const seen = visible + t0 + r / g;
      const row = scores + <usize>r * rb;
      const mp = mask + <usize>(h0 + r % g) * <usize>capacity + <usize>lo;
      for (let s = 0; s < seen; s++) if (load<u8>(mp + <usize>s) != 0) store<f32>(row + (<usize>s << 2), -Infinity);
    }
  }
  // softmax numerators in place; pad lanes are -inf so whole vectors can be used
  const pw = f32x4.splat(fused ? reinterpret<f32>(0x77800000) : 1);
  for (let r = 0; r < rows; r++) {
    const seen = visible + t0 + r / g;
    const spr = (seen + 3) & ~3;
    const row = scores + <usize>r * rb;
    for (let s = seen; s < spr; s++) store<f32>(row + (<usize>s << 2), -Infinity);
    let mv = f32x4.splat(-Infinity);
    // pmax (one instruction): a NaN score is not carried into m, but its row's output is NaN all the same
    for (let s = 0; s < spr; s += 4) mv = f32x4.pmax(mv, v128.load(row + (<usize>s << 2)));
    const m = f32x4.splat(max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3))));
    let sum = f64x2.splat(0);
    for (let s = 0; s < spr; s += 4) {
      const p = row + (<usize>s << 2);
      const e = exp4(f32x4.sub(v128.load(p), m));
      v128.store(p, f32x4.mul(e, pw)); // fused: w·2^112 times half·2^-112 is w·half rounded once
      sum = f64x2.add(sum, f64x2.add(f64x2.promote_low_f32x4(e), f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 0, 1))));
    }
    const total = f64x2.extract_lane(sum, 0) + f64x2.extract_lane(sum, 1);
    store<f32>(invs + (<usize>r << 2), total > 0 ? <f32>(1 / total) : 0);
    if (part >= 0) {
      const pr = partial + (<usize>r * <usize>(d + 2) << 2);
      store<f32>(pr, seen > 0 ? f32x4.extract_lane(m, 0) : -Infinity);
      store<f32>(pr, <f32>total, 4);
    }
  }
  // Σ p·v
  memory.fill(acc, 0, <usize>rows * db);
  if (fused) {
    for (let s0 = 0; s0 < seenAll; s0 += BLOCK) {
      const vp = values + kvOff + <usize>s0 * <usize>d * eb;
      for (let j = 0; j < g; j += 3) {
        axpyF16Rows(acc + <usize>j * db, scores + <usize>j * rb + (<usize>s0 << 2), rb, min(3, g - j), vp, d, min(BLOCK, seenAll - s0));
      }
    }
    // accumulators back from even/odd lanes to channel order
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < d; i += 8) {
        const o = acc + <usize>r * db + (<usize>i << 2);
        const e = v128.load(o), od = v128.load(o, 16);
        v128.store(o, v128.shuffle<f32>(e, od, 0, 4, 1, 5));
        v128.store(o, v128.shuffle<f32>(e, od, 2, 6, 3, 7), 16);
      }
    }
  } else {
    for (let s0 = 0; s0 < seenAll; s0 += BLOCK) {
      let vp = values + kvOff + <usize>s0 * <usize>d * eb;
      if (f16) {
        convertF16Fast(blk, vp, min(BLOCK, seenAll - s0) * d);
        vp = blk;
      }
      for (let r = (max(t0, s0 + 1 - visible) - t0) * g; r < rows; ) {
        const bs = min(BLOCK, visible + t0 + r / g - s0);
        const pp = scores + <usize>r * rb + (<usize>s0 << 2);
        const ap = acc + <usize>r * db;
        if (r + 1 < rows && min(BLOCK, visible + t0 + (r + 1) / g - s0) == bs) {
          axpyBlock2(ap, ap + db, pp, pp + rb, vp, d, bs);
          r += 2;
        } else {
          axpyBlock2(ap, 0, pp, 0, vp, d, bs);
          r++;
        }
      }
    }
  }
  if (part >= 0) {
    for (let r = 0; r < rows; r++) memory.copy(partial + ((<usize>r * <usize>(d + 2) + 2) << 2), acc + <usize>r * db, db);
    return;
  }
  for (let r = 0; r < rows; r++) {
    const t = t0 + r / g;
    const h = h0 + r % g;
    const seen = visible + t;
    const inv = load<f32>(invs + (<usize>r << 2));
    const iv = f32x4.splat(inv);
    const ap = acc + <usize>r * db;
    const op = out + (<usize>(t * numHeads + h) * db);
    let i = 0;
    for (; i + 4 <= d; i += 4) v128.store(op + (<usize>i << 2), f32x4.mul(v128.load(ap + (<usize>i << 2)), iv));
    for (; i < d; i++) store<f32>(op + (<usize>i << 2), load<f32>(ap + (<usize>i << 2)) * inv);
    const row = scores + <usize>r * rb;
    if (received != 0) {
      const rp = received + (<usize>h * <usize>capacity << 2);
      let s = 0;
      for (; s + 4 <= seen; s += 4) {
        const o = <usize>s << 2;
        v128.store(rp + o, f32x4.add(v128.load(rp + o), f32x4.mul(v128.load(row + o), iv)));
      }
      for (; s < seen; s++) {
        const o = <usize>s << 2;
        store<f32>(rp + o, load<f32>(rp + o) + load<f32>(row + o) * inv);
      }
    }
    if (lastProbs != 0 && t == n - 1) {
      const lp = lastProbs + (<usize>h * <usize>capacity << 2);
      let s = 0;
      for (; s + 4 <= seen; s += 4) {
        const o = <usize>s << 2;
        v128.store(lp + o, f32x4.mul(v128.load(row + o), iv));
      }
      for (; s < seen; s++) store<f32>(lp + (<usize>s << 2), load<f32>(row + (<usize>s << 2)) * inv);
      if (capacity > seen) memory.fill(lp + (<usize>seen << 2), 0, <usize>(capacity - seen) << 2);
    }
  }
}

/** dst[s] = scale · (q · k_s) for bs consecutive key rows of d floats; 4 slots per pass. */
function scoreBlock(q: usize, k: usize, d: i32, bs: i32, dst: usize, scale: f32): void {
  const db = <usize>d << 2;
  const sc = f32x4.splat(scale);
  const d4 = d & ~3;
  let s = 0;
  for (; s + 4 <= bs; s += 4) {
    const k0 = k + <usize>s * db, k1 = k0 + db, k2 = k1 + db, k3 = k2 + db;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (let i = 0; i < d4; i += 4) {
      const o = <usize>i << 2;
      const qv = v128.load(q + o);
      a0 = f32x4.add(a0, f32x4.mul(qv, v128.load(k0 + o)));
      a1 = f32x4.add(a1, f32x4.mul(qv, v128.load(k1 + o)));
      a2 = f32x4.add(a2, f32x4.mul(qv, v128.load(k2 + o)));
      a3 = f32x4.add(a3, f32x4.mul(qv, v128.load(k3 + o)));
    }
    let v = hsum4(a0, a1, a2, a3);
    if (d4 < d) {
      let t0: f32 = 0, t1: f32 = 0, t2: f32 = 0, t3: f32 = 0;
      for (let i = d4; i < d; i++) {
        const o = <usize>i << 2;
        const qv = load<f32>(q + o);
        t0 += qv * load<f32>(k0 + o);
        t1 += qv * load<f32>(k1 + o);
        t2 += qv * load<f32>(k2 + o);
        t3 += qv * load<f32>(k3 + o);
      }
      v = tail4(v, t0, t1, t2, t3);
    }
    v128.store(dst + (<usize>s << 2), f32x4.mul(v, sc));
  }
  for (; s < bs; s++) store<f32>(dst + (<usize>s << 2), dotF32(q, k + <usize>s * db, d) * scale);
}

/** dst0[s], dst1[s] = scale · (q0 · k_s), scale · (q1 · k_s): 4 slots × 2 heads per pass. */
function scoreBlock2(q0: usize, q1: usize, k: usize, d: i32, bs: i32, dst0: usize, dst1: usize, scale: f32): void {
  const db = <usize>d << 2;
  const d4 = d & ~3;
  if (d4 < d) {
    // odd head sizes: the single-head kernel has the scalar tails
    scoreBlock(q0, k, d, bs, dst0, scale);
    scoreBlock(q1, k, d, bs, dst1, scale);
    return;
  }
  const sc = f32x4.splat(scale);
  let s = 0;
  for (; s + 4 <= bs; s += 4) {
    const k0 = k + <usize>s * db, k1 = k0 + db, k2 = k1 + db, k3 = k2 + db;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    let b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    for (let i = 0; i < d4; i += 4) {
      const o = <usize>i << 2;
      const u = v128.load(q0 + o);
      const v = v128.load(q1 + o);
      let kv = v128.load(k0 + o);
      a0 = f32x4.add(a0, f32x4.mul(u, kv));
      b0 = f32x4.add(b0, f32x4.mul(v, kv));
      kv = v128.load(k1 + o);
      a1 = f32x4.add(a1, f32x4.mul(u, kv));
      b1 = f32x4.add(b1, f32x4.mul(v, kv));
      kv = v128.load(k2 + o);
      a2 = f32x4.add(a2, f32x4.mul(u, kv));
      b2 = f32x4.add(b2, f32x4.mul(v, kv));
      kv = v128.load(k3 + o);
      a3 = f32x4.add(a3, f32x4.mul(u, kv));
      b3 = f32x4.add(b3, f32x4.mul(v, kv));
    }
    v128.store(dst0 + (<usize>s << 2), f32x4.mul(hsum4(a0, a1, a2, a3), sc));
    v128.store(dst1 + (<usize>s << 2), f32x4.mul(hsum4(b0, b1, b2, b3), sc));
  }
  for (; s < bs; s++) {
    store<f32>(dst0 + (<usize>s << 2), dotF32(q0, k + <usize>s * db, d) * scale);
    store<f32>(dst1 + (<usize>s << 2), dotF32(q1, k + <usize>s * db, d) * scale);
  }
}

/**
 * dst_j[s] = scale · (q_j · k_s) for nr ≤ 3 prescaled query rows (prescaleX layout, d apart) over bs f16
 * key rows: 2 slots × nr rows per pass, each 8 halves widened once in registers (h2fEven/h2fOdd, the
 * f32 bits of half·2^-112) for all rows. d is a multiple of 8.
 */
function scoreF16Rows(q: usize, nr: i32, k: usize, d: i32, bs: i32, dst: usize, dstStride: usize, scale: f32): void {
  const db = <usize>d << 2;
  const kb = <usize>d << 1;
  const q1 = q + (nr > 1 ? db : 0), q2 = q + (nr > 2 ? db << 1 : 0);
  const d1 = dst + (nr > 1 ? dstStride : 0), d2 = dst + (nr > 2 ? dstStride << 1 : 0);
  for (let s = 0; s < bs; s += 2) {
    const k0 = k + <usize>s * kb;
    const k1 = s + 1 < bs ? k0 + kb : k0; // odd tail: the last slot twice, one result kept
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, b0 = a0, b1 = a0, b2 = a0;
    for (let i = 0; i < d; i += 8) {
      const o = <usize>i << 1;
      const v = v128.load(k0 + o), w = v128.load(k1 + o);
      const ve = h2fEven(v), vo = h2fOdd(v), we = h2fEven(w), wo = h2fOdd(w);
      const qo = <usize>i << 2;
      let qe = v128.load(q + qo), qd = v128.load(q + qo, 16);
      a0 = f32x4.add(a0, f32x4.add(f32x4.mul(qe, ve), f32x4.mul(qd, vo)));
      b0 = f32x4.add(b0, f32x4.add(f32x4.mul(qe, we), f32x4.mul(qd, wo)));
      if (nr > 1) {
        qe = v128.load(q1 + qo); qd = v128.load(q1 + qo, 16);
        a1 = f32x4.add(a1, f32x4.add(f32x4.mul(qe, ve), f32x4.mul(qd, vo)));
        b1 = f32x4.add(b1, f32x4.add(f32x4.mul(qe, we), f32x4.mul(qd, wo)));
      }
      if (nr > 2) {
        qe = v128.load(q2 + qo); qd = v128.load(q2 + qo, 16);
        a2 = f32x4.add(a2, f32x4.add(f32x4.mul(qe, ve), f32x4.mul(qd, vo)));
        b2 = f32x4.add(b2, f32x4.add(f32x4.mul(qe, we), f32x4.mul(qd, wo)));
      }
    }
    // [row0 s, row0 s+1, row1 s, row1 s+1], [row2 s, row2 s+1, -, -]
    const sc = f32x4.splat(scale);
    const x = f32x4.mul(hsum4(a0, b0, a1, b1), sc);
    const y = f32x4.mul(hsum4(a2, b2, a2, b2), sc);
    // row 0 last: with nr < 3 the unused rows alias it
    const o = <usize>s << 2;
    store<f32>(d2 + o, f32x4.extract_lane(y, 0));
    store<f32>(d1 + o, f32x4.extract_lane(x, 2));
    store<f32>(dst + o, f32x4.extract_lane(x, 0));
    if (s + 1 < bs) {
      store<f32>(d2 + o, f32x4.extract_lane(y, 1), 4);
      store<f32>(d1 + o, f32x4.extract_lane(x, 3), 4);
      store<f32>(dst + o, f32x4.extract_lane(x, 1), 4);
    }
  }
}

/**
 * acc_j += Σ_s w_j[s] · v_s for nr ≤ 3 rows over bs f16 value rows, w_j = w + j·wStride (softmax
 * weights prescaled by 2^112), acc_j = acc + j·d floats kept in even/odd lane order per 8 channels
 * (the caller puts them back): 8 channels × nr rows in registers while the slots stream by, each 8
 * halves widened once. The sums per channel run over the slots in order, as axpyBlock2's do.
 */
function axpyF16Rows(acc: usize, w: usize, wStride: usize, nr: i32, v: usize, d: i32, bs: i32): void {
  const db = <usize>d << 2;
  const kb = <usize>d << 1;
  const acc1 = acc + (nr > 1 ? db : 0), acc2 = acc + (nr > 2 ? db << 1 : 0);
  const w1 = w + (nr > 1 ? wStride : 0), w2 = w + (nr > 2 ? wStride << 1 : 0);
  for (let i = 0; i < d; i += 8) {
    const o = <usize>i << 2;
    let ae = v128.load(acc + o), ao = v128.load(acc + o, 16);
    let be = v128.load(acc1 + o), bo = v128.load(acc1 + o, 16);
    let ce = v128.load(acc2 + o), co = v128.load(acc2 + o, 16);
    for (let s = 0; s < bs; s++) {
      const x = v128.load(v + <usize>s * kb + (<usize>i << 1));
      const xe = h2fEven(x), xo = h2fOdd(x);
      const so = <usize>s << 2;
      const P = v128.load32_splat(w + so);
      ae = f32x4.add(ae, f32x4.mul(P, xe));
      ao = f32x4.add(ao, f32x4.mul(P, xo));
      if (nr > 1) {
        const Q = v128.load32_splat(w1 + so);
        be = f32x4.add(be, f32x4.mul(Q, xe));
        bo = f32x4.add(bo, f32x4.mul(Q, xo));
      }
      if (nr > 2) {
        const R = v128.load32_splat(w2 + so);
        ce = f32x4.add(ce, f32x4.mul(R, xe));
        co = f32x4.add(co, f32x4.mul(R, xo));
      }
    }
    // row 0 last: with nr < 3 the unused rows alias it
    v128.store(acc2 + o, ce);
    v128.store(acc2 + o, co, 16);
    v128.store(acc1 + o, be);
    v128.store(acc1 + o, bo, 16);
    v128.store(acc + o, ae);
    v128.store(acc + o, ao, 16);
  }
}

/**
 * acc0[d] += Σ_s p0[s] · v_s and acc1[d] += Σ_s p1[s] · v_s over bs rows (acc1 = 0: one head only).
 * The accumulators stay in registers 16 numbers at a time while the slots stream by (the block is in
 * L1), and each loaded value vector serves both heads.
 */
function axpyBlock2(acc0: usize, acc1: usize, p0: usize, p1: usize, v: usize, d: i32, bs: i32): void {
  const db = <usize>d << 2;
  const two = acc1 != 0;
  let i = 0;
  for (; i + 16 <= d; i += 16) {
    const o = <usize>i << 2;
    let a0 = v128.load(acc0 + o), a1 = v128.load(acc0 + o, 16), a2 = v128.load(acc0 + o, 32), a3 = v128.load(acc0 + o, 48);
    if (two) {
      let b0 = v128.load(acc1 + o), b1 = v128.load(acc1 + o, 16), b2 = v128.load(acc1 + o, 32), b3 = v128.load(acc1 + o, 48);
      for (let s = 0; s < bs; s++) {
        const vr = v + <usize>s * db + o;
        const x0 = v128.load(vr), x1 = v128.load(vr, 16), x2 = v128.load(vr, 32), x3 = v128.load(vr, 48);
        const P = v128.load32_splat(p0 + (<usize>s << 2));
        const Q = v128.load32_splat(p1 + (<usize>s << 2));
        a0 = f32x4.add(a0, f32x4.mul(P, x0));
        a1 = f32x4.add(a1, f32x4.mul(P, x1));
        a2 = f32x4.add(a2, f32x4.mul(P, x2));
        a3 = f32x4.add(a3, f32x4.mul(P, x3));
        b0 = f32x4.add(b0, f32x4.mul(Q, x0));
        b1 = f32x4.add(b1, f32x4.mul(Q, x1));
        b2 = f32x4.add(b2, f32x4.mul(Q, x2));
        b3 = f32x4.add(b3, f32x4.mul(Q, x3));
      }
      v128.store(acc1 + o, b0);
      v128.store(acc1 + o, b1, 16);
      v128.store(acc1 + o, b2, 32);
      v128.store(acc1 + o, b3, 48);
    } else {
      for (let s = 0; s < bs; s++) {
        const vr = v + <usize>s * db + o;
        const P = v128.load32_splat(p0 + (<usize>s << 2));
        a0 = f32x4.add(a0, f32x4.mul(P, v128.load(vr)));
        a1 = f32x4.add(a1, f32x4.mul(P, v128.load(vr, 16)));
        a2 = f32x4.add(a2, f32x4.mul(P, v128.load(vr, 32)));
        a3 = f32x4.add(a3, f32x4.mul(P, v128.load(vr, 48)));
      }
    }
    v128.store(acc0 + o, a0);
    v128.store(acc0 + o, a1, 16);
    v128.store(acc0 + o, a2, 32);
    v128.store(acc0 + o, a3, 48);
  }
  for (; i + 4 <= d; i += 4) {
    const o = <usize>i << 2;
    let a = v128.load(acc0 + o);
    let b = two ? v128.load(acc1 + o) : a;
    for (let s = 0; s < bs; s++) {
      const x = v128.load(v + <usize>s * db + o);
      a = f32x4.add(a, f32x4.mul(v128.load32_splat(p0 + (<usize>s << 2)), x));
      if (two) b = f32x4.add(b, f32x4.mul(v128.load32_splat(p1 + (<usize>s << 2)), x));
    }
    v128.store(acc0 + o, a);
    if (two) v128.store(acc1 + o, b);
  }
  for (; i < d; i++) {
    const o = <usize>i << 2;
    let a = load<f32>(acc0 + o);
    let b = two ? load<f32>(acc1 + o) : a;
    for (let s = 0; s < bs; s++) {
      const x = load<f32>(v + <usize>s * db + o);
      a += load<f32>(p0 + (<usize>s << 2)) * x;
      if (two) b += load<f32>(p1 + (<usize>s << 2)) * x;
    }
    store<f32>(acc0 + o, a);
    if (two) store<f32>(acc1 + o, b);
  }
}
