import { topIndices } from './store.js';

/** The q-quantile of sorted numbers, interpolating linearly between neighbours (numpy's default). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const pos = q * (sorted.length - 1);
  const i = Math.floor(pos);
  const f = pos - i;
  return i + 1 < sorted.length ? sorted[i]! * (1 - f) + sorted[i + 1]! * f : sorted[i]!;
}

export function median(x: ArrayLike<number>): number {
  return quantile(Float64Array.from(x).sort(), 0.5);
}

/** Buffers valueOutliers reuses for rows of `d` numbers, so that writing a row allocates nothing. */
export class OutlierScratch {
  readonly sorted: Float64Array;
  readonly score: Float64Array;
  readonly dense: Float32Array;
  readonly idx: number[] = [];

  constructor(d: number) {
    this.sorted = new Float64Array(d);
    this.score = new Float64Array(d);
    this.dense = new Float32Array(d);
  }
}

/**
 * KVQuant's per-token value outliers: the `ocap` entries farthest from the row's median are outliers;
 * the dense row has them replaced by the median (so they do not stretch the row's range). With
 * `scratch`, dense and outliers are its buffers, valid until the next call.
 */
export function valueOutliers(x: Float32Array, ocap: number, scratch = new OutlierScratch(x.length)): { dense: Float32Array; outliers: number[] } {
  if (!ocap) return { dense: x, outliers: [] };
  const { sorted, score, dense, idx } = scratch;
  sorted.set(x);
  const m = quantile(sorted.sort(), 0.5);
  for (let i = 0; i < x.length; i++) score[i] = Math.abs(x[i]! - m);
  const outliers = topIndices(score, ocap, idx);
  dense.set(x);
  for (const i of outliers) dense[i] = m;
  return { dense, outliers };
}

/**
 * Q-Norm: the LUT's signposts shifted and scaled so that the dequantized numbers get the mean and
 * standard deviation of the numbers themselves, L' = μ + (L − μ̂)·σ/σ̂, from running sums over the
 * numbers x and their quantized values q.
 */
export class Moments {
  n = 0;
  sx = 0;
  sxx = 0;
  sq = 0;
  sqq = 0;

  /** Adds `count` numbers whose sum is sx and sum of squares sxx, each quantized to q. */
  add(x: number, q: number, count = 1, sxx = x * x * count): void {
    this.n += count;
    this.sx += x * count;
    this.sxx += sxx;
    this.sq += q * count;
    this.sqq += q * q * count;
  }

  normalise(levels: readonly number[]): number[] {
    if (this.n < 2) return [...levels];
    const mx = this.sx / this.n;
    const mq = this.sq / this.n;
    const sx = Math.sqrt(Math.max(0, this.sxx / this.n - mx * mx));
    const sq = Math.sqrt(Math.max(0, this.sqq / this.n - mq * mq));
    if (!(sq > 0) || !(sx > 0)) return [...levels];
    return levels.map((l) => Math.fround(mx + ((l - mq) * sx) / sq));
  }
}
