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

/**
 * Lloyd-Max quantizer (the optimal scalar quantizer for mean squared error) of a symmetric density
 * on [−edge, edge]: 2^bits sorted levels, each the mean of the density between its midpoints.
 * Integrated on a fine grid by prefix sums; iterated until the levels stop moving.
 */
export function lloydMax(bits: number, density: (t: number) => number, edge: number): number[] {
  const N = 1 << 16;
  const step = (2 * edge) / N;
  // prefix sums of mass and first moment over grid cells (midpoint rule)
  const mass = new Float64Array(N + 1);
  const moment = new Float64Array(N + 1);
  for (let i = 0; i < N; i++) {
    const t = -edge + (i + 0.5) * step;
    const w = density(t) * step;
    mass[i + 1] = mass[i]! + w;
    moment[i + 1] = moment[i]! + w * t;
  }
  // mass and moment below t, linear within a cell
  const below = (sums: Float64Array, t: number): number => {
    const x = Math.max(0, Math.min(N, (t + edge) / step));
    const i = Math.min(N - 1, Math.floor(x));
    return sums[i]! + (x - i) * (sums[i + 1]! - sums[i]!);
  };
  const k = 2 ** bits;
  // start from equal-mass quantiles
  let levels = Array.from({ length: k }, (_, c) => {
    const target = ((c + 0.5) / k) * mass[N]!;
    let i = 0;
    while (i < N && mass[i + 1]! < target) i++;
    return -edge + (i + 0.5) * step;
  });
  for (let iter = 0; iter < 100000; iter++) {
    const cuts = [-edge, ...midpoints(levels), edge];
    const next = levels.map((old, c) => {
      const m = below(mass, cuts[c + 1]!) - below(mass, cuts[c]!);
      return m > 0 ? (below(moment, cuts[c + 1]!) - below(moment, cuts[c]!)) / m : old;
    });
    const moved = Math.max(...next.map((v, c) => Math.abs(v - levels[c]!)));
    levels = next;
    if (moved < 1e-13 * edge) break;
  }
  // exactly symmetric, as the density is
  return levels.map((_, c) => (levels[c]! - levels[k - 1 - c]!) / 2);
}

/**
 * TurboQuant's codebook for b bits on heads of d (Zandieh et al., 2025): Lloyd-Max levels for one
 * coordinate of a uniformly random unit vector in R^d, whose density is ∝ (1 − t²)^((d−3)/2) on [−1, 1]
 * (≈ N(0, 1/d) for large d, the form vLLM uses; the exact one matters on narrow heads).
 */
export function turboCentroids(bits: number, d: number): number[] {
  if (d < 3) throw new RangeError(`internal: TurboQuant needs heads of 3 or more numbers, not ${d}`);
  const half = (d - 3) / 2;
  return lloydMax(bits, (t) => Math.pow(Math.max(0, 1 - t * t), half), 1).map((v) => Math.fround(v));
}
