// Weighted k-means: Lloyd's objective never increases, a seed fixes the result, weights pull centroids.
import { describe, expect, it } from 'vitest';
import { weightedKMeans } from '../../src/calibrate/kmeans.js';
import { seededRandom } from '../../src/util/random.js';

function data(n: number, seed: number): { x: Float64Array; w: Float64Array } {
  const random = seededRandom(seed);
  // a skewed, heavy-tailed mixture, like normalised activations, with heavy-tailed weights like squared gradients
  const x = Float64Array.from({ length: n }, () => Math.tanh((random() - 0.3) * 3 * (random() < 0.1 ? 3 : 1)));
  const w = Float64Array.from({ length: n }, () => (random() < 0.05 ? 0 : Math.log(random() + 1e-12) ** 2));
  return { x, w };
}

describe('weightedKMeans', () => {
  it.each([2, 3, 4])('never increases the weighted objective (%i bits)', (bits) => {
    for (const seed of [1, 2, 3]) {
      const { x, w } = data(3000, seed);
      const { objective, centroids } = weightedKMeans(x, w, 2 ** bits, seed);
      expect(objective.length).toBeGreaterThan(2);
      for (let i = 1; i < objective.length; i++) expect(objective[i]!).toBeLessThanOrEqual(objective[i - 1]! * (1 + 1e-12));
      expect(objective.at(-1)!).toBeLessThan(objective[0]!);
      expect(centroids).toHaveLength(2 ** bits);
      expect([...centroids].sort((a, b) => a - b)).toEqual(centroids);
    }
  });

  it('is deterministic for a seed', () => {
    const { x, w } = data(2000, 9);
    expect(weightedKMeans(x, w, 8, 5)).toEqual(weightedKMeans(x, w, 8, 5));
  });

  it('moves centroids toward heavily weighted points', () => {
    const x = Float64Array.from({ length: 200 }, (_, i) => -1 + (2 * i) / 199);
    const plain = weightedKMeans(x, new Float64Array(200).fill(1), 4, 1).centroids;
    const heavyRight = weightedKMeans(x, Float64Array.from(x, (v) => (v > 0.5 ? 100 : 1)), 4, 1).centroids;
    expect(heavyRight.filter((c) => c > 0.5).length).toBeGreaterThan(plain.filter((c) => c > 0.5).length);
  });

  it('finds the two clusters of separated data exactly', () => {
    const x = [-0.9, -0.8, -0.7, 0.6, 0.7, 0.8];
    const w = [1, 2, 1, 1, 1, 2];
    const { centroids } = weightedKMeans(x, w, 2, 4);
    expect(centroids[0]).toBeCloseTo(-0.8, 12);
    expect(centroids[1]).toBeCloseTo((0.6 + 0.7 + 1.6) / 4, 12);
  });
});
