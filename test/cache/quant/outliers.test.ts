import { describe, expect, it } from 'vitest';
import { OutlierScratch, valueOutliers } from '../../../src/cache/quant/stats.js';
import { topIndices } from '../../../src/cache/quant/store.js';

/** The definition: indices of positive scores, highest first, ties in index order, at most ocap. */
function byDefinition(score: ArrayLike<number>, ocap: number): number[] {
  return Array.from(score, (v, i) => [v, i] as const)
    .filter(([v]) => v > 0)
    .sort((a, b) => b[0] - a[0] || a[1] - b[1])
    .slice(0, Math.max(0, ocap))
    .map(([, i]) => i);
}

describe('outlier selection', () => {
  it('topIndices picks the highest positive scores, ties in index order, reusing its output array', () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const out: number[] = [];
    for (let trial = 0; trial < 500; trial++) {
      const n = 1 + Math.floor(rand() * 80);
      // few distinct values so ties are common; some zero and negative scores, a NaN now and then
      const score = Float64Array.from({ length: n }, () => (rand() < 0.02 ? NaN : Math.floor(rand() * 6) - 1));
      const ocap = Math.floor(rand() * 5);
      expect(topIndices(score, ocap, out), `trial ${trial}`).toEqual(byDefinition(score, ocap));
    }
  });

  it('valueOutliers replaces the entries farthest from the median by it, the same with or without reused buffers', () => {
    const x = Float32Array.from([0.1, -0.2, 5, 0.3, -4, 0.05, 0.2, 0.0]);
    const fresh = valueOutliers(x, 2);
    // sorted: -4 -0.2 0 0.05 0.1 0.2 0.3 5 → median (0.05 + 0.1) / 2
    const m = (Math.fround(0.05) + Math.fround(0.1)) / 2;
    expect(fresh.outliers).toEqual([2, 4]);
    expect(fresh.dense[2]).toBe(Math.fround(m));
    expect(fresh.dense[4]).toBe(Math.fround(m));
    const scratch = new OutlierScratch(x.length);
    valueOutliers(Float32Array.from({ length: 8 }, (_, i) => i), 3, scratch); // leaves other numbers in the buffers
    const reused = valueOutliers(x, 2, scratch);
    expect(Array.from(reused.dense)).toEqual(Array.from(fresh.dense));
    expect(reused.outliers).toEqual(fresh.outliers);
  });
});
