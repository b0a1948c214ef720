// Matrix products straight from the stored dtype: one-token matvecs (a row at a time, front to back),
// few-token products for batched decode (a quad of rows converted once, every token run over it) and
// register-tiled chunked prefill.

import {
  ARGS, CTRL_DONE, CTRL_NEXT, DT_BF16, DT_F16, DT_F32, DT_INT_DOT,
  MATMUL_CHUNK, MATMUL_COLS, MATMUL_DTYPE, MATMUL_FEW, MATMUL_N, MATMUL_PART, MATMUL_PART_BYTES, MATMUL_PARTS, MATMUL_SCRATCH, MATMUL_SCRATCH_STRIDE,
  MATMUL_X, PART_OUT, PART_ROWS, PART_W,
} from '../src/kernels/abi';
import { convertF16Fast, convertRow, rowBytes } from './convert';
import { activationSpan, blockRowDot, dequantizeBlockRow, intMatmulRows, isBlockType, prepareActivations, prepareTokens, preparedStride } from './ggml';
import { bf2fHi, bf2fLo, h2fEven, h2fHi, h2fLo, h2fOdd, h2fScalar } from './half';
import { dotF32, hsum, hsum4, madd, prescaleX, tail4 } from './simd';

const C_DONE: usize = <usize>CTRL_DONE << 2; // atomic count of finished work items
const C_NEXT: usize = <usize>CTRL_NEXT << 2; // atomic work-item counter
const C_ARGS: usize = <usize>ARGS;

/** Work items are `chunk` rows of one part, the parts' items one after the other. */
export function matmulJob(ctrl: usize, thread: i32): i32 {
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
    } else if ((dt & DT_INT_DOT) != 0) {
      // block types the fast way: every token's activations prepared once per thread, then integer tiles
      if (prepared < 0) prepareTokens(scratch, x, dt, cols, n);
      prepared = 1;
      intMatmulRows(out, w, dt, rowBytes(dt, cols), rows, cols, n, r0, r1, scratch);
    } else if (n <= MATMUL_FEW && (dt == DT_F32 || dt == DT_F16 || dt == DT_BF16)) {
      // f32 and f16 rows (x prescaled once per thread, as the matvec's) up to 4 tokens and bf16 rows at 2,
      // in registers, each token summed as its one-token matvec sums it
      if (dt == DT_F16 && n <= F16_IN_REGISTERS && prepared < 0) prepared = prescaleTokens(scratch, x, cols, n) ? 1 : 0;
      if (dt == DT_F32 && n <= F32_IN_REGISTERS) dotF32Few(out, x, w, rows, cols, n, r0, r1);
      else if (dt == DT_F16 && n <= F16_IN_REGISTERS && prepared == 1) dotF16sFew(out, x, w, rows, cols, n, r0, r1, scratch);
      else if (dt == DT_BF16 && n == 2) dotBf16Pair(out, x, w, rows, cols, r0, r1);
      else matmulFew(out, x, w, dt, rows, cols, n, r0, r1, scratch);
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
    if ((dt & DT_INT_DOT) != 0) {
      intMatmulRows(out, w, dt, rb, 0, cols, 1, r0, r1, scratch);
      return;
    }
    const block = scratch + preparedStride(cols);
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


/** One f16 (x too large to prescale) or bf16 row · x: 8 halves per 16-byte load, widened in
 *  registers, summed as dotF32 sums. */
function dotHalves(w: usize, x: usize, cols: i32, bf16: bool): f32 {
  let a = f32x4.splat(0), b = a;
  let k = 0;
  for (; k + 8 <= cols; k += 8) {
    const v = v128.load(w + (<usize>k << 1));
    const xo = x + (<usize>k << 2);
    a = madd(bf16 ? bf2fLo(v) : h2fLo(v), v128.load(xo), a);
    b = madd(bf16 ? bf2fHi(v) : h2fHi(v), v128.load(xo, 16), b);
  }
  return withTail(hsum(f32x4.add(a, b)), w, x, k, cols, bf16);
}

/** One f16 row · x for prescaled x (xs from prescaleX): each half is widened to the f32 bit pattern
 *  of half · 2^-112 with 5 integer ops per 8 halves (h2fEven / h2fOdd); f16 subnormals land on f32
 *  denormals, exactly. The products xs·w' are then x·w rounded once, as with a converted weight,
 *  without the per-weight multiply by 2^112. The lane sums of the even and odd halves, added as
 *  below, give the same sum as the in-order lanes of the 4-row kernels. Tail columns (cols % 8) use
 *  the unscaled x. Multiply then add in both builds: relaxed_madd ran 25% slower here (Node 20, x64). */
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
  return withTail(hsum(a) + hsum(b), w, x, k, cols);
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
    a0 = madd(q8dot(w0 + o + 2, x0, x1, x2, x3, x4, x5, x6, x7), f32x4.splat(h2fScalar(load<u16>(w0 + o))), a0);
    a1 = madd(q8dot(w1 + o + 2, x0, x1, x2, x3, x4, x5, x6, x7), f32x4.splat(h2fScalar(load<u16>(w1 + o))), a1);
    a2 = madd(q8dot(w2 + o + 2, x0, x1, x2, x3, x4, x5, x6, x7), f32x4.splat(h2fScalar(load<u16>(w2 + o))), a2);
    a3 = madd(q8dot(w3 + o + 2, x0, x1, x2, x3, x4, x5, x6, x7), f32x4.splat(h2fScalar(load<u16>(w3 + o))), a3);
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
  // (c0·x0 + c1·x1) + (c2·x2 + c3·x3), each pair one fused multiply-add in the relaxed build
  const s = f32x4.add(madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l0)), x0, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l0)), x1)),
    madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h0)), x2, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h0)), x3)));
  const t = f32x4.add(madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l1)), x4, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l1)), x5)),
    madd(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h1)), x6, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h1)), x7)));
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

/**
 * A few tokens (batched decode, float dtypes): rows [r0, r1) a quad at a time, converted and packed
 * straight into this thread's scratch (16·cols bytes, L1 or L2), then every token run over the quad
 * before the next one, so each weight is read and converted once per step whatever n is.
 */
function matmulFew(out: usize, x: usize, w: usize, dt: i32, rows: i32, cols: i32, n: i32, r0: i32, r1: i32, scratch: usize): void {
  const rb = rowBytes(dt, cols);
  const fs = <usize>cols << 2;
  const os = <usize>rows << 2;
  for (let r = r0; r < r1; r += 4) {
    const m = min(4, r1 - r);
    if (dt == DT_F32) packQuad(scratch, w + <usize>r * rb, rb, m, cols);
    else packHalves(scratch, w + <usize>r * rb, rb, m, cols, dt == DT_BF16);
    const ot = out + (<usize>r << 2);
    for (let t = 0; t < n; t += 2) {
      const xt = x + <usize>t * fs;
      const nt = min(2, n - t);
      tile42(scratch, cols, xt, nt == 2 ? xt + fs : xt, ot + <usize>t * os, os, m, nt);
    }
  }
}

/** f32 weights up to this many tokens run dotF32Few rather than matmulFew (docs/serve.md). */
const F32_IN_REGISTERS = 4;

/** f16 weights up to this many tokens run dotF16sFew rather than matmulFew (docs/serve.md). */
const F16_IN_REGISTERS = 4;

/** Rows [r0, r1) of f16 weights for n (2..F16_IN_REGISTERS) tokens of prescaled x (xs: prescaleTokens):
 *  a row at a time, its tokens two by two (the row read from memory once, then from L1), each token
 *  summed exactly as dotF16s sums it: every token gets its one-token matvec's numbers. */
function dotF16sFew(out: usize, x: usize, w: usize, rows: i32, cols: i32, n: i32, r0: i32, r1: i32, xs: usize): void {
  const rb = <usize>cols << 1;
  const fs = <usize>cols << 2;
  const os = <usize>rows << 2;
  for (let r = r0; r < r1; r++) {
    const wr = w + <usize>r * rb;
    const o = out + (<usize>r << 2);
    let t = 0;
    for (; t + 2 <= n; t += 2) rowF16sPair(wr, xs + <usize>t * fs, x + <usize>t * fs, fs, cols, o + <usize>t * os, os);
    if (t < n) store<f32>(o + <usize>t * os, dotF16s(wr, xs + <usize>t * fs, x + <usize>t * fs, cols));
  }
}

/** One f16 row · two tokens (prescaled xs, xs + fs; x, x + fs for the tail) into out, out + os, each
 *  summed as dotF16s sums it: every 8 halves loaded and widened once for both. */
// @ts-ignore: decorator
@inline function rowF16sPair(w: usize, xs: usize, x: usize, fs: usize, cols: i32, out: usize, os: usize): void {
  const c8 = cols & ~7;
  const x1 = xs + fs;
  let a0 = f32x4.splat(0), b0 = a0, a1 = a0, b1 = a0;
  for (let k = 0; k < c8; k += 8) {
    const v = v128.load(w + (<usize>k << 1));
    const e = h2fEven(v), d = h2fOdd(v);
    const o = <usize>k << 2;
    a0 = f32x4.add(a0, f32x4.mul(e, v128.load(xs + o)));
    b0 = f32x4.add(b0, f32x4.mul(d, v128.load(xs + o, 16)));
    a1 = f32x4.add(a1, f32x4.mul(e, v128.load(x1 + o)));
    b1 = f32x4.add(b1, f32x4.mul(d, v128.load(x1 + o, 16)));
  }
  store<f32>(out, withTail(hsum(a0) + hsum(b0), w, x, c8, cols));
  store<f32>(out + os, withTail(hsum(a1) + hsum(b1), w, x + fs, c8, cols));
}

/** Rows [r0, r1) of f32 weights for n (2..F32_IN_REGISTERS) tokens: a row at a time, its tokens two by
 *  two (the row read from memory once, then from L1), each token summed exactly as dotF32 sums it: every
 *  token gets its one-token matvec's numbers. */
function dotF32Few(out: usize, x: usize, w: usize, rows: i32, cols: i32, n: i32, r0: i32, r1: i32): void {
  const fs = <usize>cols << 2;
  const os = <usize>rows << 2;
  for (let r = r0; r < r1; r++) {
    const wr = w + <usize>r * fs;
    const o = out + (<usize>r << 2);
    let t = 0;
    for (; t + 2 <= n; t += 2) rowF32Pair(wr, x + <usize>t * fs, fs, cols, o + <usize>t * os, os);
    if (t < n) store<f32>(o + <usize>t * os, dotF32(wr, x + <usize>t * fs, cols));
  }
}

/** One f32 row · two tokens (x, x + fs) into out, out + os, summed as dotF32 sums each (lanes k % 8 < 4
 *  and ≥ 4 apart, then 4 at a time, then the scalar tail). */
// @ts-ignore: decorator
@inline function rowF32Pair(w: usize, x: usize, fs: usize, cols: i32, out: usize, os: usize): void {
  const x1 = x + fs;
  const c8 = cols & ~7, c4 = cols & ~3;
  let a0 = f32x4.splat(0), b0 = a0, a1 = a0, b1 = a0;
  for (let k = 0; k < c8; k += 8) {
    const o = <usize>k << 2;
    const u = v128.load(w + o), v = v128.load(w + o, 16);
    a0 = f32x4.add(a0, f32x4.mul(u, v128.load(x + o)));
    b0 = f32x4.add(b0, f32x4.mul(v, v128.load(x + o, 16)));
    a1 = f32x4.add(a1, f32x4.mul(u, v128.load(x1 + o)));
    b1 = f32x4.add(b1, f32x4.mul(v, v128.load(x1 + o, 16)));
  }
  if (c4 > c8) {
    const o = <usize>c8 << 2;
    const u = v128.load(w + o);
    a0 = f32x4.add(a0, f32x4.mul(u, v128.load(x + o)));
    a1 = f32x4.add(a1, f32x4.mul(u, v128.load(x1 + o)));
  }
  store<f32>(out, withTailF32(hsum(f32x4.add(a0, b0)), w, x, c4, cols));
  store<f32>(out + os, withTailF32(hsum(f32x4.add(a1, b1)), w, x1, c4, cols));
}

/** s plus Σ w[k]·x[k] over an f32 row's tail columns [c4, cols), as dotF32 adds it (s itself when there are none). */
function withTailF32(s: f32, w: usize, x: usize, c4: i32, cols: i32): f32 {
  if (c4 == cols) return s;
  let t: f32 = 0;
  for (let k = c4; k < cols; k++) t += load<f32>(w + (<usize>k << 2)) * load<f32>(x + (<usize>k << 2));
  return s + t;
}

/** Rows [r0, r1) of bf16 weights for 2 tokens, each row read and widened once, both tokens summed as
 *  their one-token dotHalves sums them. */
function dotBf16Pair(out: usize, x: usize, w: usize, rows: i32, cols: i32, r0: i32, r1: i32): void {
  const rb = <usize>cols << 1;
  const fs = <usize>cols << 2;
  const os = <usize>rows << 2;
  const c8 = cols & ~7;
  const x1 = x + fs;
  for (let r = r0; r < r1; r++) {
    const wr = w + <usize>r * rb;
    let a0 = f32x4.splat(0), b0 = a0, a1 = a0, b1 = a0;
    for (let k = 0; k < c8; k += 8) {
      const v = v128.load(wr + (<usize>k << 1));
      const lo = bf2fLo(v), hi = bf2fHi(v);
      const o = <usize>k << 2;
      a0 = madd(lo, v128.load(x + o), a0);
      b0 = madd(hi, v128.load(x + o, 16), b0);
      a1 = madd(lo, v128.load(x1 + o), a1);
      b1 = madd(hi, v128.load(x1 + o, 16), b1);
    }
    const o = out + (<usize>r << 2);
    store<f32>(o, withTail(hsum(f32x4.add(a0, b0)), wr, x, c8, cols, true));
    store<f32>(o + os, withTail(hsum(f32x4.add(a1, b1)), wr, x1, c8, cols, true));
  }
}

/** prescaleX of each of n tokens (x rows cols floats apart) into scratch, cols floats apart: false if
 *  any token is too large for it. */
function prescaleTokens(scratch: usize, x: usize, cols: i32, n: i32): bool {
  const fs = <usize>cols << 2;
  for (let t = 0; t < n; t++) if (!prescaleX(scratch + <usize>t * fs, x + <usize>t * fs, cols)) return false;
  return true;
}

/** s plus Σ half(w[k])·x[k] over an f16 (or bf16) row's tail columns [c8, cols) (s itself when there are none). */
function withTail(s: f32, w: usize, x: usize, c8: i32, cols: i32, bf16: bool = false): f32 {
  if (c8 == cols) return s;
  let t: f32 = 0;
  for (let k = c8; k < cols; k++) {
    const h = <u32>load<u16>(w + (<usize>k << 1));
    t += (bf16 ? reinterpret<f32>(h << 16) : h2fScalar(h)) * load<f32>(x + (<usize>k << 2));
  }
  return s + t;
}

/** packQuad of m (≤ 4) f16 or bf16 rows at src (stride rb), widened on the way (f16: the fast
 *  widening, as the prefill's; weights hold no inf/NaN). */
function packHalves(dst: usize, src: usize, rb: usize, m: i32, cols: i32, bf16: bool): void {
  const c8 = cols & ~7, c4 = cols & ~3;
  const z = f32x4.splat(0);
  for (let j = 0; j < 4; j++) {
    const s = src + <usize>j * rb;
    let d = dst + (<usize>j << 4);
    if (j >= m) {
      for (let k = 0; k < c4; k += 4, d += 64) v128.store(d, z);
      continue;
    }
    let k = 0;
    // one loop per dtype: a ternary on bf16 inside would compile to a select of both widenings
    if (bf16) {
      for (; k < c8; k += 8, d += 128) {
        const v = v128.load(s + (<usize>k << 1));
        v128.store(d, bf2fLo(v));
        v128.store(d, bf2fHi(v), 64);
      }
      if (k < c4) v128.store(d, bf2fLo(v128.load64_zero(s + (<usize>k << 1))));
    } else {
      for (; k < c8; k += 8, d += 128) {
        const v = v128.load(s + (<usize>k << 1));
        v128.store(d, h2fLo(v));
        v128.store(d, h2fHi(v), 64);
      }
      if (k < c4) v128.store(d, h2fLo(v128.load64_zero(s + (<usize>k << 1))));
    }
  }
  const tl = cols - c4;
  const dt = dst + (<usize>c4 << 4);
  for (let j = 0; j < 4; j++) {
    for (let k = 0; k < tl; k++) {
      const h = j < m ? <u32>load<u16>(src + <usize>j * rb + (<usize>(c4 + k) << 1)) : 0;
      store<f32>(dt + (<usize>(j * tl + k) << 2), bf16 ? reinterpret<f32>(h << 16) : h2fScalar(h));
    }
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
    a0 = madd(w, y, a0);
    b0 = madd(w, z, b0);
    w = v128.load(pw, 16);
    a1 = madd(w, y, a1);
    b1 = madd(w, z, b1);
    w = v128.load(pw, 32);
    a2 = madd(w, y, a2);
    b2 = madd(w, z, b2);
    w = v128.load(pw, 48);
    a3 = madd(w, y, a3);
    b3 = madd(w, z, b3);
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
