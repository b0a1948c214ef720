// f16 → f32 conversion shared by the kernels (index.ts, quant.ts).

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
