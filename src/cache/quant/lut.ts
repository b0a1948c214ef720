/**
 * Lookup tables (datatypes) of the quantized codecs. A stored number is L[code]·scale + zero:
 *   int:     L[c] = c, scale = (max − min)/(2^b − 1), zero = min (asymmetric min-max integers).
 *   uniform: L[c] = −1 + 2c/(2^b − 1) on [−1, 1]; scale = (max − min)/2, zero = (max + min)/2.
 *   nf:      NormalFloat signposts on [−1, 1] (same scale/zero as uniform).
 * Codes are assigned by `nearest` (the quantize kernel's definition) against `midpoints`.
 */

export { nearest } from '../../kernels/packed/quantize.js';

/** Φ(x) from erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, plenty for signposts). */
function normalCdf(x: number): number {
  const z = Math.abs(x) / Math.SQRT2;
  const t = 1 / (1 + 0.3275911 * z);
  const erf = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-z * z);
  return x >= 0 ? 0.5 * (1 + erf) : 0.5 * (1 - erf);
}

/** Φ⁻¹(p) by bisection (only used to build a handful of signposts). */
export function normalQuantile(p: number): number {
  let lo = -10;
  let hi = 10;
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (normalCdf(mid) < p) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/**
 * NormalFloat with `bits` bits, built as QLoRA describes NF4: 2^(b−1) positive and 2^(b−1) − 1 negative
 * quantiles of N(0, 1) and an exact zero, the outermost at 1 − δ with δ = ½(1/(2P) + 1/(2(P−1))),
 * P = 2^(b−1); normalised so the ends are ±1. Sorted ascending.
 */
export function normalFloat(bits: number): number[] {
  const P = 2 ** (bits - 1);
  const delta = 0.5 * (1 / (2 * P) + 1 / (2 * (P - 1)));
  const top = 0.5 - delta; // probability mass between the median and the outermost signpost
  const pos = Array.from({ length: P }, (_, i) => normalQuantile(0.5 + (top * (i + 1)) / P));
  const neg = Array.from({ length: P - 1 }, (_, i) => -normalQuantile(0.5 + (top * (i + 1)) / (P - 1)));
  const all = [...neg, 0, ...pos].sort((a, b) => a - b);
  const m = Math.max(...all.map(Math.abs));
  return all.map((v) => Math.fround(v / m));
}

export function uniformLut(bits: number): number[] {
  const k = 2 ** bits - 1;
  return Array.from({ length: k + 1 }, (_, c) => Math.fround(-1 + (2 * c) / k));
}

export function intLut(bits: number): number[] {
  return Array.from({ length: 2 ** Math.min(bits, 4) }, (_, c) => c);
}

/** Decision thresholds between neighbouring entries of a sorted LUT (nearest-entry rounding). */
export function midpoints(lut: readonly number[]): Float64Array {
  const m = new Float64Array(lut.length - 1);
  for (let c = 0; c + 1 < lut.length; c++) m[c] = (lut[c]! + lut[c + 1]!) / 2;
  return m;
}
