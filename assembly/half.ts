// f16 / bf16 ↔ f32 conversions of single numbers and of vector lanes, shared by every kernel.

/** 4 f16 (zero-extended in i32 lanes) to f32. Integer trick: the 15 magnitude bits shifted into an
 *  f32 with the exponent rebased by a multiply by 2^112, which also normalises subnormals. */
// @ts-ignore: decorator
@inline export function h2f(h: v128): v128 {
  const em = i32x4.shl(v128.and(h, i32x4.splat(0x7fff)), 13);
  let f = f32x4.mul(em, f32x4.splat(reinterpret<f32>(0x77800000)));
  // exponent 31 (inf/NaN) must stay inf/NaN
  f = v128.or(f, v128.and(i32x4.ge_s(em, i32x4.splat(0x0f800000)), i32x4.splat(0x7f800000)));
  return v128.or(f, i32x4.shl(v128.and(h, i32x4.splat(0x8000)), 16));
}

/** One IEEE half (the low 16 bits of h) → f32: the 15 magnitude bits shifted into place, the exponent
 *  rebased by a multiply by 2^112 (which also normalises subnormals); exponent 31 stays inf/NaN. */
// @ts-ignore: decorator
@inline export function h2fScalar(h: u32): f32 {
  const em = (h & 0x7fff) << 13;
  let bits = reinterpret<u32>(reinterpret<f32>(em) * reinterpret<f32>(0x77800000));
  if (em >= 0x0f800000) bits |= 0x7f800000;
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

/** Fast f16 → f32 of halves 0..3 / 4..7 of a vector of 8 halves (hot loops). Per 16-bit lane,
 *  (h >> 3 arithmetic) & 0x8fff is the upper half of sign | (h & 0x7fff) << 13 and h << 13 its lower
 *  half; interleaving them gives that f32 bit pattern, and the multiply by 2^112 rebases the exponent
 *  (normalising subnormals) keeping the sign. The 16-bit steps are shared by both halves (CSE).
 *  Unlike h2f, inf/NaN halves decode as finite ±65536·(1+m); weights and cached keys/values never
 *  hold them (toF16 overflow is the only source). */
// @ts-ignore: decorator
@inline export function h2fLo(v: v128): v128 {
  const hp = v128.and(i16x8.shr_s(v, 3), i16x8.splat(<i16>0x8fff));
  const lp = i16x8.shl(v, 13);
  return f32x4.mul(i16x8.shuffle(lp, hp, 0, 8, 1, 9, 2, 10, 3, 11), f32x4.splat(reinterpret<f32>(0x77800000)));
}
// @ts-ignore: decorator
@inline export function h2fHi(v: v128): v128 {
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
@inline export function h2fEven(v: v128): v128 {
  return v128.and(i32x4.shr_s(i32x4.shl(v, 16), 3), i32x4.splat(0x8fffe000));
}
// @ts-ignore: decorator
@inline export function h2fOdd(v: v128): v128 {
  return v128.and(i32x4.shr_s(v, 3), i32x4.splat(0x8fffe000));
}

// @ts-ignore: decorator
@inline export function bf2fLo(v: v128): v128 {
  return i16x8.shuffle(i16x8.splat(0), v, 0, 8, 1, 9, 2, 10, 3, 11);
}
// @ts-ignore: decorator
@inline export function bf2fHi(v: v128): v128 { // lanes as punpckhwd with zero (V8 emits one instruction)
  return i16x8.shuffle(i16x8.splat(0), v, 4, 12, 5, 13, 6, 14, 7, 15);
}

/** 4 f32 to f16 bits (in i32 lanes), round to nearest even; NaN → 0x7e00, overflow → inf. */
// @ts-ignore: decorator
@inline export function f2h(v: v128): v128 {
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
