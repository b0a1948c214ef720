import { describe, expect, it } from 'vitest';
import { ASCENDING, selectFirst } from '../../src/util/select.js';
import { seededRandom } from '../../src/util/random.js';

describe('selectFirst', () => {
  it('puts the k smallest first and the k-th at k − 1, as a sort does (duplicates included)', () => {
    const random = seededRandom(3);
    for (let trial = 0; trial < 500; trial++) {
      const n = 1 + Math.floor(random() * 80);
      const values = Float32Array.from({ length: n }, () => Math.floor(random() * 9) / 8);
      const k = 1 + Math.floor(random() * n);
      const sorted = values.slice().sort();
      const items = values.slice();
      selectFirst(items, n, k, ASCENDING);
      expect(items[k - 1]).toBe(sorted[k - 1]);
      expect(Array.from(items.subarray(0, k)).sort()).toEqual(Array.from(sorted.subarray(0, k)).sort());
    }
  });

  it('orders indices by what an order looks up', () => {
    const score = [5, 1, 4, 1.5, 3, 2];
    const slots = Int32Array.from({ length: score.length }, (_, i) => i);
    selectFirst(slots, slots.length, 3, { before: (a, b) => score[a]! < score[b]! });
    expect(Array.from(slots.subarray(0, 3)).sort()).toEqual([1, 3, 5]);
  });
});
