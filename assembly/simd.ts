// The SIMD toolkit the kernels share: lane sums, dot products, e^x, and the rows of attention (row
// max, softmax numerators, scores, weighted sums of value rows, the normalised outputs). Both attention
// kernels (attention.ts on float slots, packed-attention.ts on decoded tiles) run these same helpers.

/** Sums of the lanes of a, b, c, d as one vector [Σa, Σb, Σc, Σd]. */
// @ts-ignore: decorator
@inline export function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<f32>(a, b, 0, 4, 1, 5), v128.shuffle<f32>(a, b, 2, 6, 3, 7));
  const cd = f32x4.add(v128.shuffle<f32>(c, d, 0, 4, 1, 5), v128.shuffle<f32>(c, d, 2, 6, 3, 7));
  return f32x4.add(v128.shuffle<f32>(ab, cd, 0, 1, 4, 5), v128.shuffle<f32>(ab, cd, 2, 3, 6, 7));
}

// @ts-ignore: decorator
@inline export function hsum(a: v128): f32 {
  const b = f32x4.add(a, v128.shuffle<f32>(a, a, 2, 3, 0, 1));
  return f32x4.extract_lane(b, 0) + f32x4.extract_lane(b, 1);
}

/** a · b over len floats: lanes k % 8 < 4 and ≥ 4 in two sums, their lanes added as hsum4 does,
 *  then the scalar tail (summed apart) — the same arithmetic per row as the 4-row kernels. */
export function dotF32(a: usize, b: usize, len: i32): f32 {
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
@inline export function tail4(v: v128, s0: f32, s1: f32, s2: f32, s3: f32): v128 {
  return f32x4.add(v, f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(s0), 1, s1), 2, s2), 3, s3));
}

/** dst[0..cols&~7) = x · 2^112 (exact: a power of two), each 8 numbers stored as the even ones then
 *  the odd ones (the order dotF16s widens halves in), unless some |x| ≥ 2^16 or is NaN, where the
 *  scaled value could overflow: then false and the caller keeps the multiplying kernel. */
export function prescaleX(dst: usize, x: usize, cols: i32): bool {
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

/** e^x for 4 lanes (Cephes-style range reduction + degree-6 polynomial, ~1-2 ulp). Inputs below the
 *  f32 normal range give 0; inputs above 88 are clamped. */
// @ts-ignore: decorator
@inline export function exp4(x: v128): v128 {
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

/** dst[s] = scale · (q · k_s) for bs consecutive key rows of d floats; 4 slots per pass. */
export function scoreBlock(q: usize, k: usize, d: i32, bs: i32, dst: usize, scale: f32): void {
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
export function scoreBlock2(q0: usize, q1: usize, k: usize, d: i32, bs: i32, dst0: usize, dst1: usize, scale: f32): void {
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
 * acc0[d] += Σ_s p0[s] · v_s and acc1[d] += Σ_s p1[s] · v_s over bs rows (acc1 = 0: one head only).
 * The accumulators stay in registers 16 numbers at a time while the slots stream by (the block is in
 * L1), and each loaded value vector serves both heads.
 */
export function axpyBlock2(acc0: usize, acc1: usize, p0: usize, p1: usize, v: usize, d: i32, bs: i32): void {
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


/** Max of the 4 lanes. */
// @ts-ignore: decorator
@inline export function hmax4(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/** Pads row[seen, pad) with -inf (so whole vectors can be used; pad a multiple of 4) and returns the
 *  row's max. pmax is one instruction: a NaN score is not carried into the max, but its row's output is
 *  NaN all the same. */
// @ts-ignore: decorator
@inline export function rowMax(row: usize, seen: i32, pad: i32): f32 {
  for (let s = seen; s < pad; s++) store<f32>(row + (<usize>s << 2), -Infinity);
  let mv = f32x4.splat(-Infinity);
  for (let s = 0; s < pad; s += 4) mv = f32x4.pmax(mv, v128.load(row + (<usize>s << 2)));
  return hmax4(mv);
}

/** Softmax numerators in place: row[s] = e^(row[s] − m) · pw over [0, pad) (pw: 1, or 2^112 where
 *  the weights meet f16 halves widened without it); returns Σ e^(row[s] − m), summed in f64. */
// @ts-ignore: decorator
@inline export function expRow(row: usize, pad: i32, m: f32, pw: v128): f64 {
  const mv = f32x4.splat(m);
  let sum = f64x2.splat(0);
  for (let s = 0; s < pad; s += 4) {
    const p = row + (<usize>s << 2);
    const e = exp4(f32x4.sub(v128.load(p), mv));
    v128.store(p, f32x4.mul(e, pw));
    sum = f64x2.add(sum, f64x2.add(f64x2.promote_low_f32x4(e), f64x2.promote_low_f32x4(v128.shuffle<f32>(e, e, 2, 3, 0, 1))));
  }
  return f64x2.extract_lane(sum, 0) + f64x2.extract_lane(sum, 1);
}

/** dst[0, len) = src · k. */
export function scaleRow(dst: usize, src: usize, len: i32, k: f32): void {
  const kv = f32x4.splat(k);
  let i = 0;
  for (; i + 4 <= len; i += 4) v128.store(dst + (<usize>i << 2), f32x4.mul(v128.load(src + (<usize>i << 2)), kv));
  for (; i < len; i++) store<f32>(dst + (<usize>i << 2), load<f32>(src + (<usize>i << 2)) * k);
}

/** dst[0, len) += src · k. */
export function addScaledRow(dst: usize, src: usize, len: i32, k: f32): void {
  const kv = f32x4.splat(k);
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    const o = <usize>i << 2;
    v128.store(dst + o, f32x4.add(v128.load(dst + o), f32x4.mul(v128.load(src + o), kv)));
  }
  for (; i < len; i++) {
    const o = <usize>i << 2;
    store<f32>(dst + o, load<f32>(dst + o) + load<f32>(src + o) * k);
  }
}

/**
 * The end of an attention row: out = acc / Σ (inv = 1/Σ); the probabilities row · inv added into
 * `received` and/or written to `lastProbs` (its slots past `seen` zeroed up to `capacity`); 0: not wanted.
 */
export function finishRow(out: usize, acc: usize, d: i32, row: usize, seen: i32, inv: f32, received: usize, lastProbs: usize, capacity: i32): void {
  scaleRow(out, acc, d, inv);
  if (received != 0) addScaledRow(received, row, seen, inv);
  if (lastProbs != 0) {
    scaleRow(lastProbs, row, seen, inv);
    if (capacity > seen) memory.fill(lastProbs + (<usize>seen << 2), 0, <usize>(capacity - seen) << 2);
  }
}

/**
 * The end of an attention work item of `rows` rows (row r: query t0 + r/g, head h0 + r%g, seeing
 * seen0 + r/g slots; its scores `rowBytes` apart). part ≥ 0: the unnormalised sums go to the partial
 * buffer for the caller to merge; otherwise finishRow for each (lastProbs for the job's last query only).
 */
export function finishItem(out: usize, acc: usize, scores: usize, rowBytes: usize, invs: usize, rows: i32, g: i32, t0: i32, h0: i32,
  seen0: i32, numHeads: i32, d: i32, n: i32, part: i32, partial: usize, received: usize, lastProbs: usize, capacity: i32): void {
  const db = <usize>d << 2;
  if (part >= 0) {
    for (let r = 0; r < rows; r++) memory.copy(partial + ((<usize>r * <usize>(d + 2) + 2) << 2), acc + <usize>r * db, db);
    return;
  }
  for (let r = 0; r < rows; r++) {
    const t = t0 + r / g;
    const h = h0 + r % g;
    const probs = <usize>h * <usize>capacity << 2;
    finishRow(out + (<usize>(t * numHeads + h) * db), acc + <usize>r * db, d, scores + <usize>r * rowBytes, seen0 + r / g, load<f32>(invs + (<usize>r << 2)),
      received != 0 ? received + probs : 0, lastProbs != 0 && t == n - 1 ? lastProbs + probs : 0, capacity);
  }
}

// ================================================================ relaxed SIMD or its SIMD128 equivalent
// ASC_FEATURE_RELAXED_SIMD is a compile-time constant: each build keeps one branch.

/** a·b + c on f32 lanes: one fused multiply-add in the relaxed build (rounded once where the CPU
 *  fuses), a multiply then an add in SIMD128. */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** Bytes per 8-bit activation code as the integer dot products read them: i8 in the relaxed build,
 *  widened to i16 in SIMD128 (for i32x4.dot_i16x8_s). */
export const CODE_BYTES: i32 = ASC_FEATURE_RELAXED_SIMD ? 1 : 2;

/** acc + Σ c·x over 16 values as 4 i32 lanes: c 16 unsigned codes in [0, 127] (i7), x 16 activation
 *  codes (CODE_BYTES each) at xq. Relaxed: an i8 dot product into i16 pairs (its i7 operand is c; no
 *  pair overflows, |x| ≤ 127), widened by pairs; SIMD128: two i16 dot products. Not the fused
 *  i32x4.relaxed_dot_i8x16_i7x16_add_s: Node 20's baseline wasm compiler (Liftoff) gets it wrong. */
// @ts-ignore: decorator
@inline export function dotCodesU(c: v128, xq: usize, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.add(acc, i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq), c)));
  return i32x4.add(acc, i32x4.add(
    i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(c), v128.load(xq)),
    i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(c), v128.load(xq, 16)),
  ));
}

/** As dotCodesU for signed codes c in [-127, 127]: relaxed moves c's sign onto x (|c| is the i7
 *  operand; x is never -128); SIMD128 widens c as it is. */
// @ts-ignore: decorator
@inline export function dotCodesS(c: v128, xq: usize, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const neg = i8x16.lt_s(c, i8x16.splat(0));
    const x = i8x16.sub(v128.xor(v128.load(xq), neg), neg);
    return i32x4.add(acc, i32x4.extadd_pairwise_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x, i8x16.abs(c))));
  }
  return dotCodesU(c, xq, acc);
}

/** acc + Σ(c0·x0 + c1·x1) over 32 values (4 i32 lanes): c0, c1 unsigned codes in [0, 63], x0 and x1 the
 *  16 activation codes at xq and the next 16. Relaxed: the two i8 dot products' i16 pairs added, then
 *  widened once (see dotCodes32Scaled); SIMD128: dotCodesU twice. */
// @ts-ignore: decorator
@inline export function dotCodes32(c0: v128, c1: v128, xq: usize, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const p = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq), c0), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 16), c1));
    return i32x4.add(acc, i32x4.extadd_pairwise_i16x8_s(p));
  }
  return dotCodesU(c1, xq + 16 * CODE_BYTES, dotCodesU(c0, xq, acc));
}

/** acc + s·Σ(c0·x0 + c1·x1) over 32 values (4 i32 lanes): c0, c1 unsigned codes in [0, 63] with one
 *  integer scale s (|s| < 2^15), x0 and x1 the 16 activation codes at xq and the next 16. Relaxed: the
 *  two i8 dot products' i16 pairs added (|pair| ≤ 2·63·127, two fit i16), then one i16 dot product
 *  with s widens and scales them; SIMD128: dotCodesU, times s. */
// @ts-ignore: decorator
@inline export function dotCodes32Scaled(c0: v128, c1: v128, xq: usize, s: i32, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const p = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq), c0), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq, 16), c1));
    return i32x4.add(acc, i32x4.dot_i16x8_s(p, i16x8.splat(<i16>s)));
  }
  return i32x4.add(acc, i32x4.mul(dotCodesU(c1, xq + 16 * CODE_BYTES, dotCodesU(c0, xq, i32x4.splat(0))), i32x4.splat(s)));
}

/** acc + s·Σ c·x over 16 values: c unsigned codes in [0, 127], |s| < 2^15 (see dotCodes32Scaled). */
// @ts-ignore: decorator
@inline export function dotCodes16Scaled(c: v128, xq: usize, s: i32, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i32x4.add(acc, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xq), c), i16x8.splat(<i16>s)));
  return i32x4.add(acc, i32x4.mul(dotCodesU(c, xq, i32x4.splat(0)), i32x4.splat(s)));
}
