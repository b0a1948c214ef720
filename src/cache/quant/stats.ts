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

/**
 * KVQuant's per-token value outliers: the `ocap` entries farthest from the row's median are outliers;
 * the dense row has them replaced by the median (so they do not stretch the row's range).
 */
export function valueOutliers(x: Float32Array, ocap: number): { dense: Float32Array; outliers: number[] } {
  if (!ocap) return { dense: x, outliers: [] };
  const m = median(x);
  const outliers = topIndices(Float64Array.from(x, (v) => Math.abs(v - m)), ocap);
  const dense = x.slice();
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
