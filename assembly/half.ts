/** One IEEE half (the low 16 bits of h) → f32: the 15 magnitude bits shifted into place, the exponent
 *  rebased by a multiply by 2^112 (which also normalises subnormals); exponent 31 stays inf/NaN. */
// @ts-ignore: decorator
@inline export function h2fScalar(h: u32): f32 {
  const em = (h & 0x7fff) << 13;
  let bits = reinterpret<u32>(reinterpret<f32>(em) * reinterpret<f32>(0x77800000));
  if (em >= 0x0f800000) bits |= 0x7f800000;
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}
