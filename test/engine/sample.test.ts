import { describe, expect, it } from 'vitest';
import { argmax, logSoftmax, Sampler, seededRandom } from '../../src/engine/sample.js';

describe('sampling', () => {
  it('temperature 0 is argmax, first index on ties', () => {
    const s = new Sampler(4, { temperature: 0, topP: 1, seed: 1 });
    expect(s.sample([0.1, 3, 3, -1])).toBe(1);
    expect(argmax([5, 1, 5])).toBe(0);
  });

  it('the same seed gives the same tokens; another seed differs', () => {
    const logits = Array.from({ length: 50 }, (_, i) => Math.sin(i));
    const run = (seed: number) => {
      const s = new Sampler(50, { temperature: 1, topP: 1, seed });
      return Array.from({ length: 40 }, () => s.sample(logits));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
  });

  it('follows the softmax distribution at temperature 1', () => {
    const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.2)];
    const s = new Sampler(3, { temperature: 1, topP: 1, seed: 3 });
    const counts = [0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[s.sample(logits)]!++;
    expect(counts[0]! / 20000).toBeCloseTo(0.5, 1);
    expect(counts[1]! / 20000).toBeCloseTo(0.3, 1);
    expect(counts[2]! / 20000).toBeCloseTo(0.2, 1);
  });

  it('top-p keeps the smallest set reaching p and renormalises it', () => {
    // probabilities 0.5, 0.3, 0.15, 0.05: p = 0.7 keeps {0, 1}; 0 with 5/8, 1 with 3/8
    const logits = [0.5, 0.3, 0.15, 0.05].map(Math.log);
    const s = new Sampler(4, { temperature: 1, topP: 0.7, seed: 11 });
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 20000; i++) counts[s.sample(logits)]!++;
    expect(counts[2]).toBe(0);
    expect(counts[3]).toBe(0);
    expect(counts[0]! / 20000).toBeCloseTo(0.625, 1);
  });

  it('log-softmax sums to one in probability', () => {
    const lp = logSoftmax([1, 2, 3, 1000]);
    expect(lp.reduce((a, b) => a + Math.exp(b), 0)).toBeCloseTo(1, 12);
  });

  it('seededRandom is uniform on [0, 1)', () => {
    const r = seededRandom(42);
    let sum = 0;
    for (let i = 0; i < 10000; i++) {
      const x = r();
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
      sum += x;
    }
    expect(sum / 10000).toBeCloseTo(0.5, 1);
  });
});
