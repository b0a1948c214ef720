import { describe, expect, it } from 'vitest';
import { UsageError } from '../../../src/errors.js';
import { randomF32, rng } from '../../kernels/util.js';
import { attendCodec, attendDecoded, bothKernels, makeCodec, quantConfig as config, writeTokens as write } from './helpers.js';

describe('Hadamard rotation of the quantized codecs', () => {
  const kernels = bothKernels();

  it.each([
    ['int(bits=8,rotate=hadamard)', 64], ['int(bits=4,krotate=hadamard)', 64], ['int(bits=4,vrotate=hadamard,group=32)', 96],
    ['kvquant(bits=4,prerope=false,rotate=hadamard,calibrate=1)', 64], ['kvquant(bits=3,vrotate=hadamard,calibrate=1)', 128],
  ] as const)('%s (head_dim %i): rows read back unrotated; attention on the codes = softmax over the decoded rows (query rotated, output rotated back)', (spec, d) => {
    const c = config({ headDim: d });
    for (const k of [kernels.ref, kernels.wasm]) {
      const r = rng(d);
      const n = 24;
      const keys = randomF32(r, n * c.numKvHeads * d, 2);
      const values = randomF32(r, n * c.numKvHeads * d, 2);
      const codec = makeCodec(k, c, spec);
      const roped = write(k, codec, c, keys, values, n);
      // decoded rows are near the originals (so readRow undoes the rotation)
      let err = 0;
      for (let t = 0; t < n; t++) {
        for (let h = 0; h < c.numKvHeads; h++) {
          const at = (t * c.numKvHeads + h) * d;
          const key = codec.readRow(0, h, t, 'key');
          const value = codec.readRow(0, h, t, 'value');
          for (let i = 0; i < d; i++) err = Math.max(err, Math.abs(key[i]! - roped[at + i]!), Math.abs(value[i]! - values[at + i]!));
        }
      }
      expect(err, spec).toBeLessThan(spec.includes('bits=8') ? 0.05 : 1.2);
      const q = randomF32(r, c.numHeads * d, 1);
      const { out: got, probs } = attendCodec(k, codec, c, q, n);
      const want = attendDecoded(codec, c, q, n);
      for (let i = 0; i < got.length; i++) expect(got[i]!).toBeCloseTo(want.out[i]!, 3);
      for (let j = 0; j < c.numHeads; j++) for (let t = 0; t < n; t++) expect(probs[j * 64 + t]!).toBeCloseTo(want.probs[j * n + t]!, 4);
      codec.free();
    }
  });

  it('spreads a key outlier channel: int4 per token loses less with the rotation than without', () => {
    const c = config();
    const r = rng(9);
    const n = 16;
    const keys = randomF32(r, n * c.numKvHeads * c.headDim, 1);
    for (let t = 0; t < n * c.numKvHeads; t++) keys[t * c.headDim + 3] = 30; // one channel far out, as real keys have
    const values = randomF32(r, keys.length, 1);
    const mse = (spec: string): number => {
      const codec = makeCodec(kernels.ref, c, spec);
      const roped = write(kernels.ref, codec, c, keys, values, n);
      let sum = 0;
      for (let t = 0; t < n; t++) {
        for (let h = 0; h < c.numKvHeads; h++) {
          const row = codec.readRow(0, h, t, 'key');
          for (let i = 0; i < c.headDim; i++) sum += (row[i]! - roped[(t * c.numKvHeads + h) * c.headDim + i]!) ** 2;
        }
      }
      codec.free();
      return sum;
    };
    expect(mse('int(bits=4,rotate=hadamard)')).toBeLessThan(mse('int(bits=4)') / 2);
  });

  it('refuses keys rotated before RoPE (kvquant prerope, streaming) and a calibration file of unrotated numbers', () => {
    const c = config();
    expect(() => makeCodec(kernels.ref, c, 'kvquant(rotate=hadamard)')).toThrow(UsageError);
    expect(() => makeCodec(kernels.ref, c, 'kvquant(rotate=hadamard)')).toThrow(/prerope=true quantizes them before RoPE.*vrotate=hadamard,krotate=none/);
    expect(() => makeCodec(kernels.ref, c, 'int(bits=4,rotate=hadamard)', 64, true)).toThrow(/streaming keeps them before RoPE/);
    expect(() => makeCodec(kernels.ref, c, 'kvquant(prerope=false,rotate=hadamard,calib=x.json)')).toThrow(/unrotated keys and values/);
    expect(() => makeCodec(kernels.ref, config({ headDim: 9 }), 'int(bits=4,vrotate=hadamard)')).toThrow(/even head_dim/);
    makeCodec(kernels.ref, c, 'int(bits=4,vrotate=hadamard)', 64, true).free();
    makeCodec(kernels.ref, c, 'kvquant(vrotate=hadamard,krotate=none)').free();
  });
});
