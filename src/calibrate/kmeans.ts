import { seededRandom } from '../util/random.js';

export interface KMeansResult {
  /** Sorted ascending. */
  centroids: number[];
  /** Σ w·(x − nearest centroid)² after each iteration (the initial centroids first). */
  objective: number[];
}

/**
 * Weighted k-means on the line (Lloyd's algorithm): minimises Σ wᵢ·(xᵢ − c(xᵢ))². k-means++ seeding
 * from `seed` makes the result deterministic; each iteration assigns every point to its nearest
 * centroid, then moves each centroid to the weighted mean of its points, so the objective never increases.
 * A centroid that loses all its points stays where it is. With fewer distinct weighted points than k,
 * the spare centroids repeat existing ones.
 */
export function weightedKMeans(x: ArrayLike<number>, w: ArrayLike<number>, k: number, seed: number, maxIterations = 100): KMeansResult {
  const points = Array.from({ length: x.length }, (_, i) => i).filter((i) => w[i]! > 0);
  if (points.length === 0) throw new RangeError('internal: k-means needs at least one point of positive weight');
  const centroids = seedCentroids(x, w, points, k, seededRandom(seed));
  const assign = new Int32Array(x.length).fill(-1);
  const objective = [assignAll(x, w, points, centroids, assign).objective];
  for (let it = 0; it < maxIterations; it++) {
    const sw = new Float64Array(k);
    const swx = new Float64Array(k);
    for (const i of points) {
      sw[assign[i]!]! += w[i]!;
      swx[assign[i]!]! += w[i]! * x[i]!;
    }
    for (let c = 0; c < k; c++) if (sw[c]! > 0) centroids[c] = swx[c]! / sw[c]!;
    const step = assignAll(x, w, points, centroids, assign);
    objective.push(step.objective);
    if (!step.changed) break;
  }
  return { centroids: [...centroids].sort((a, b) => a - b), objective };
}

/** k-means++: the first centroid by weight, each next one with probability ∝ w·D² (D: distance to the nearest chosen). */
function seedCentroids(x: ArrayLike<number>, w: ArrayLike<number>, points: number[], k: number, random: () => number): number[] {
  /** A point drawn with probability ∝ score(j) (uniformly when every score is 0). */
  const draw = (score: (j: number) => number): number => {
    let total = 0;
    for (let j = 0; j < points.length; j++) total += score(j);
    if (!(total > 0)) return x[points[Math.floor(random() * points.length)]!]!;
    let r = random() * total;
    for (let j = 0; j < points.length; j++) if ((r -= score(j)) <= 0) return x[points[j]!]!;
    return x[points.at(-1)!]!;
  };
  const centroids = [draw((j) => w[points[j]!]!)];
  const d2 = points.map((i) => (x[i]! - centroids[0]!) ** 2);
  while (centroids.length < k) {
    const c = draw((j) => w[points[j]!]! * d2[j]!);
    centroids.push(c);
    points.forEach((i, j) => (d2[j] = Math.min(d2[j]!, (x[i]! - c) ** 2)));
  }
  return centroids;
}

function assignAll(x: ArrayLike<number>, w: ArrayLike<number>, points: number[], centroids: number[], assign: Int32Array): { objective: number; changed: boolean } {
  let objective = 0;
  let changed = false;
  for (const i of points) {
    let best = 0;
    for (let c = 1; c < centroids.length; c++) if (Math.abs(x[i]! - centroids[c]!) < Math.abs(x[i]! - centroids[best]!)) best = c;
    objective += w[i]! * (x[i]! - centroids[best]!) ** 2;
    if (assign[i] !== best) [assign[i], changed] = [best, true];
  }
  return { objective, changed };
}
