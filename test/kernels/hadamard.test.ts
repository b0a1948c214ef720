import { describe, expect, it } from 'vitest';
import { hadamardBlock, hadamardRows } from '../../src/kernels/hadamard.js';
import { randomF32, rng } from './util.js';

/** Sylvester's construction as a dense matrix: H_1 = [1], H_2n = [[H_n, H_n], [H_n, −H_n]]. */
function sylvester(n: number): number[][] {
  let h = [[1]];
  while (h.length < n) h = [...h.map((row) => [...row, ...row]), ...h.map((row) => [...row, ...row.map((v) => -v)])];
  return h;
}

describe('Hadamard rotation', () => {
  it.each([2, 4, 8, 64, 128])('H_%i/√n on each block equals the dense Sylvester matrix product, and is its own inverse', (n) => {
    const r = rng(n);
    const blocks = 3;
    const x = randomF32(r, n * blocks, 2);
    const y = x.slice();
    hadamardRows(y, n);
    const h = sylvester(n);
    for (let b = 0; b < blocks; b++) {
      for (let i = 0; i < n; i++) {
        let want = 0;
        for (let j = 0; j < n; j++) want += h[i]![j]! * x[b * n + j]!;
        expect(y[b * n + i]!).toBeCloseTo(want / Math.sqrt(n), 5);
      }
    }
    hadamardRows(y, n);
    for (let i = 0; i < x.length; i++) expect(y[i]!).toBeCloseTo(x[i]!, 5);
  });

  it('keeps the norm, spreads a one-channel spike evenly, and stays finite near the f32 limit', () => {
    const x = new Float32Array(64);
    x[5] = 8;
    hadamardRows(x, 64);
    for (const v of x) expect(Math.abs(v)).toBeCloseTo(1, 6);
    const big = new Float32Array(128).fill(3e38);
    hadamardRows(big, 128);
    for (const v of big) expect(Number.isNaN(v)).toBe(false);
  });

  it('blocks as llama.cpp picks them: the largest power of two dividing head_dim, capped', () => {
    expect([64, 128, 256, 96, 80, 8].map((d) => hadamardBlock(d, 128))).toEqual([64, 128, 128, 32, 16, 8]);
    expect([64, 128, 256].map((d) => hadamardBlock(d, 64))).toEqual([64, 64, 64]);
    expect(() => hadamardRows(new Float32Array(12), 8)).toThrow(/does not tile/);
  });
});
