import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Codec } from '../../../src/cache/codec.js';
import { CODECS, parseSpec } from '../../../src/cache/registry.js';
import { withDefaults } from '../../../src/cache/spec.js';
import { UsageError } from '../../../src/errors.js';
import type { Kernels } from '../../../src/kernels/api.js';
import { createKernels } from '../../../src/kernels/index.js';
import { ropeOf } from '../../../src/kernels/rope.js';
import type { ModelConfig } from '../../../src/model/config.js';
import { put, randomF32, rng } from '../../kernels/util.js';

const config = (over: Partial<ModelConfig> = {}): ModelConfig => ({
  architecture: 'llama', hiddenSize: 256, intermediateSize: 512, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 64,
  vocabSize: 100, maxContext: 4096, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: true, qkvBias: false, ...over,
} as ModelConfig);

function makeCodec(k: Kernels, c: ModelConfig, spec: string, ropeOnRead = false): Codec {
  const part = parseSpec(spec).codec;
  const kind = CODECS.get(part.name)!;
  return kind.create(withDefaults(part, kind.schema), { kernels: k, config: c, capacity: 64, rope: ropeOf(c), ropeOnRead });
}

/** Writes n tokens at positions 0..n-1 of layer 0; returns the keys after RoPE (what readRow gives back). */
function write(k: Kernels, codec: Codec, c: ModelConfig, keys: Float32Array, values: Float32Array, n: number): Float32Array {
  const pos = put(k, Int32Array.from({ length: n }, (_, i) => i));
  const kp = put(k, keys);
  const vp = put(k, values);
  const roped = put(k, keys);
  k.rope(roped, n, c.numKvHeads, pos, ropeOf(c));
  const want = k.arena.f32(roped, keys.length).slice();
  codec.write(0, 0, n, kp, vp, pos);
  for (const p of [pos, kp, vp, roped]) k.arena.free(p);
  return want;
}

/** Softmax attention of one query over the codec's decoded rows (readRow), in f64: output and probabilities. */
function attendDecoded(codec: Codec, c: ModelConfig, q: Float32Array, n: number): { out: Float64Array; probs: Float64Array } {
  const d = c.headDim;
  const out = new Float64Array(c.numHeads * d);
  const probs = new Float64Array(c.numHeads * n);
  for (let j = 0; j < c.numHeads; j++) {
    const h = Math.floor(j / (c.numHeads / c.numKvHeads));
    const s = Array.from({ length: n }, (_, t) => codec.readRow(0, h, t, 'key').reduce((acc, v, i) => acc + v * q[j * d + i]!, 0) / Math.sqrt(d));
    const m = Math.max(...s);
    const e = s.map((v) => Math.exp(v - m));
    const z = e.reduce((a, b) => a + b, 0);
    for (let t = 0; t < n; t++) {
      probs[j * n + t] = e[t]! / z;
      const v = codec.readRow(0, h, t, 'value');
      for (let i = 0; i < d; i++) out[j * d + i]! += (e[t]! / z) * v[i]!;
    }
  }
  return { out, probs };
}

describe('Hadamard rotation of the quantized codecs', () => {
  let ref: Kernels;
  let wasm: Kernels;
  beforeAll(async () => {
    ref = await createKernels({ backend: 'reference' });
    wasm = await createKernels({ backend: 'wasm', threads: 2 });
  });
  afterAll(async () => wasm?.close());

  it.each([
    ['int(bits=8,rotate=hadamard)', 64], ['int(bits=4,krotate=hadamard)', 64], ['int(bits=4,vrotate=hadamard,group=32)', 96],
    ['kvquant(bits=4,prerope=false,rotate=hadamard,calibrate=1)', 64], ['kvquant(bits=3,vrotate=hadamard,calibrate=1)', 128],
  ] as const)('%s (head_dim %i): rows read back unrotated; attention on the codes = softmax over the decoded rows (query rotated, output rotated back)', (spec, d) => {
    const c = config({ headDim: d });
    for (const k of [ref, wasm]) {
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
      const qp = put(k, q);
      const out = k.arena.alloc(c.numHeads * d * 4);
      const lastProbs = k.arena.alloc(c.numHeads * 64 * 4);
      const positions = put(k, new Int32Array(c.numKvHeads * 64).map((_, i) => i % 64));
      codec.attention(0, { q: qp, out, n: 1, visible: n, positions, lastProbs, received: 0 });
      const want = attendDecoded(codec, c, q, n);
      const got = k.arena.f32(out, c.numHeads * d);
      for (let i = 0; i < got.length; i++) expect(got[i]!).toBeCloseTo(want.out[i]!, 3);
      const probs = k.arena.f32(lastProbs, c.numHeads * 64);
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
      const codec = makeCodec(ref, c, spec);
      const roped = write(ref, codec, c, keys, values, n);
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
    expect(() => makeCodec(ref, c, 'kvquant(rotate=hadamard)')).toThrow(UsageError);
    expect(() => makeCodec(ref, c, 'kvquant(rotate=hadamard)')).toThrow(/prerope=true quantizes them before RoPE.*vrotate=hadamard,krotate=none/);
    expect(() => makeCodec(ref, c, 'int(bits=4,rotate=hadamard)', true)).toThrow(/streaming keeps them before RoPE/);
    expect(() => makeCodec(ref, c, 'kvquant(prerope=false,rotate=hadamard,calib=x.json)')).toThrow(/unrotated keys and values/);
    expect(() => makeCodec(ref, config({ headDim: 9 }), 'int(bits=4,vrotate=hadamard)')).toThrow(/even head_dim/);
    makeCodec(ref, c, 'int(bits=4,vrotate=hadamard)', true).free();
    makeCodec(ref, c, 'kvquant(vrotate=hadamard,krotate=none)').free();
  });
});
