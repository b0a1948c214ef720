import { describe, expect, it } from 'vitest';
import { createKernels } from '../../src/kernels/index.js';
import { Rope, ropeOf, type RopeLayout } from '../../src/kernels/rope.js';
import { put, randomF32, rng } from './util.js';

describe('RoPE (the definition of Su et al. 2021, as Llama applies it)', () => {
  it('frequencies are theta^(-2j/headDim); one Rope per config', () => {
    const config = { headDim: 8, ropeTheta: 10000, ropeLayout: 'half' as const };
    const rope = ropeOf(config);
    expect(ropeOf(config)).toBe(rope);
    expect(Array.from(rope.freqs)).toEqual([1, 10000 ** -0.25, 10000 ** -0.5, 10000 ** -0.75]);
    expect(rope.freqs[2]).toBeCloseTo(0.01, 15);
    expect(rope.scaling).toEqual({ kind: 'none' });
  });

  for (const layout of ['half', 'interleaved'] as RopeLayout[]) {
    it(`${layout}: pairs the layout's dimensions and turns them by position·θ_j; q·k depends on the offset only`, async () => {
      const k = await createKernels({ backend: 'reference' });
      const d = 16;
      const rope = new Rope({ headDim: d, ropeTheta: 500, ropeLayout: layout });
      const rotate = (x: Float32Array, position: number): Float32Array => {
        const p = put(k, x);
        k.rope(p, 1, 1, put(k, Int32Array.of(position)), rope);
        return k.arena.f32(p, d).slice();
      };
      // e_j turns into cos at j's slot and sin at its partner's
      const j = 3;
      const [a, b] = layout === 'half' ? [j, j + d / 2] : [2 * j, 2 * j + 1];
      const unit = new Float32Array(d);
      unit[a] = 1;
      const turned = rotate(unit, 7);
      expect(turned[a]).toBeCloseTo(Math.cos(7 * 500 ** (-2 * j / d)), 6);
      expect(turned[b]).toBeCloseTo(Math.sin(7 * 500 ** (-2 * j / d)), 6);
      // relative positions: (q at m)·(k at n) is the same for (m + s, n + s)
      const r = rng(layout === 'half' ? 1 : 2);
      const q = randomF32(r, d);
      const key = randomF32(r, d);
      const dot = (x: Float32Array, y: Float32Array): number => x.reduce((acc, v, i) => acc + v * y[i]!, 0);
      const base = dot(rotate(q, 40), rotate(key, 13));
      for (const shift of [1, 100, 3000]) expect(dot(rotate(q, 40 + shift), rotate(key, 13 + shift))).toBeCloseTo(base, 4);
      expect(Math.abs(dot(rotate(q, 40), rotate(key, 14)) - base)).toBeGreaterThan(1e-4);
      await k.close();
    });
  }
});
