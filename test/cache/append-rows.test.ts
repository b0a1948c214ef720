import { describe, expect, it } from 'vitest';
import { createCache } from '../../src/cache/build.js';
import { parseSpec } from '../../src/cache/registry.js';
import { createKernels } from '../../src/kernels/index.js';
import { TINY } from '../model/fixtures.js';

describe('KVCache.appendRows', () => {
  it('stores given rows at the next positions without attending, as attend would store them', async () => {
    const k = await createKernels({ backend: 'reference' });
    const c = { ...TINY, ropeLayout: 'half' as const };
    const n = 40;
    const rows = n * c.numKvHeads * c.headDim;
    const keys = Float32Array.from({ length: rows }, (_, i) => Math.sin(i));
    const values = Float32Array.from({ length: rows }, (_, i) => Math.cos(i));
    const positions = Int32Array.from({ length: n }, (_, i) => i);
    const filled = createCache(k, c, parseSpec('full+fp32'), 16); // f32: values read back exactly as given
    for (let l = 0; l < c.numLayers; l++) filled.appendRows(l, keys, values, positions);
    expect(filled.layerLengths()).toEqual([n, n]);
    // values as given; keys as the codec stores them: rotated at their positions, like attend's
    const attended = createCache(k, c, parseSpec('full+fp32'), 16);
    const [kp, vp, pp, q, out] = [rows * 4, rows * 4, n * 4, n * c.numHeads * c.headDim * 4, n * c.numHeads * c.headDim * 4].map((b) => k.arena.alloc(b));
    k.arena.i32(pp!, n).set(positions);
    for (let l = 0; l < c.numLayers; l++) {
      // the codec may rotate the key buffer in place: fresh rows for each layer
      k.arena.f32(kp!, rows).set(keys);
      k.arena.f32(vp!, rows).set(values);
      attended.attend(l, q!, kp!, vp!, positions, pp!, n, out!);
    }
    for (const slot of [0, 17, n - 1]) {
      for (const which of ['key', 'value'] as const) {
        expect(filled.codec.readRow(1, 1, slot, which)).toEqual(attended.codec.readRow(1, 1, slot, which));
      }
      expect(filled.codec.readRow(0, 0, slot, 'value')).toEqual(values.slice(slot * 2 * c.headDim, slot * 2 * c.headDim + c.headDim));
    }
    expect(filled.bytes()).toBe(attended.bytes());
  });
});
