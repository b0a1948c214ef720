import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Codec } from '../../../src/cache/codec.js';
import { createCache } from '../../../src/cache/build.js';
import { toBf16 } from '../../../src/kernels/packed/quantize.js';
import { normalFloat } from '../../../src/cache/quant/lut.js';
import { CODECS, parseSpec } from '../../../src/cache/registry.js';
import { withDefaults } from '../../../src/cache/spec.js';
import { UsageError } from '../../../src/errors.js';
import type { Kernels } from '../../../src/kernels/api.js';
import { f16ToF32, f32ToF16 } from '../../../src/kernels/half.js';
import { createKernels } from '../../../src/kernels/index.js';
import { Rope, ropeOf } from '../../../src/kernels/rope.js';
import type { ModelConfig, RopeLayout } from '../../../src/model/config.js';
import { expectClose, put, randomF32, rng } from '../../kernels/util.js';

const config = (over: Partial<ModelConfig> = {}): ModelConfig => ({
  architecture: 'llama', hiddenSize: 256, intermediateSize: 512, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 64,
  vocabSize: 100, maxContext: 4096, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: true, qkvBias: false, ...over,
} as ModelConfig);

function makeCodec(k: Kernels, c: ModelConfig, spec: string, capacity = 256): Codec {
  const part = parseSpec(spec).codec;
  const kind = CODECS.get(part.name)!;
  return kind.create(withDefaults(part, kind.schema), { kernels: k, config: c, capacity, rope: ropeOf(c), ropeOnRead: false });
}

/** Rotates rows [n × heads × d] in place (the reference RoPE), on a copy. */
function roped(k: Kernels, rows: Float32Array, n: number, c: ModelConfig, pos: Int32Array, layout: RopeLayout): Float32Array {
  const p = put(k, rows);
  const pp = put(k, pos);
  k.rope(p, n, c.numKvHeads, pp, new Rope({ ...c, ropeLayout: layout }));
  const out = k.arena.f32(p, rows.length).slice();
  k.arena.free(p);
  k.arena.free(pp);
  return out;
}

/** Writes n tokens (given rows) at slot `from` of layer 0. */
function write(k: Kernels, codec: Codec, c: ModelConfig, from: number, keys: Float32Array, values: Float32Array, pos: Int32Array): void {
  const kp = put(k, keys);
  const vp = put(k, values);
  const pp = put(k, pos);
  codec.write(0, from, pos.length, kp, vp, pp);
  for (const p of [kp, vp, pp]) k.arena.free(p);
}

const row = (all: Float32Array, c: ModelConfig, t: number, h: number) => all.subarray((t * c.numKvHeads + h) * c.headDim, (t * c.numKvHeads + h + 1) * c.headDim);

describe('quantized codecs', () => {
  let ref: Kernels;
  let wasm: Kernels;
  beforeAll(async () => {
    ref = await createKernels({ backend: 'reference' });
    wasm = await createKernels({ backend: 'wasm', threads: 2 });
  });
  afterAll(async () => wasm?.close());

  it.each([
    ['int(bits=8)', 8, 64], ['int(bits=4)', 4, 64], ['int(bits=4,group=32)', 4, 32], ['int(bits=3,group=128)', 3, 128], ['int(bits=2)', 2, 64],
  ] as const)('%s: every number within half a step of its group (keys after RoPE), bits per value counted', (spec, bits, group) => {
    const c = config({ headDim: 48 }); // groups of 32/64/128 do not divide 48
    const r = rng(bits * 7 + group);
    const n = 20;
    const keys = randomF32(r, n * c.numKvHeads * c.headDim, 3);
    const values = randomF32(r, n * c.numKvHeads * c.headDim, 3);
    const pos = Int32Array.from({ length: n }, (_, i) => i * 7);
    const codec = makeCodec(ref, c, spec);
    write(ref, codec, c, 0, keys.slice(), values, pos);
    const rotated = roped(ref, keys, n, c, pos, c.ropeLayout);
    for (const [which, src] of [['key', rotated], ['value', values]] as const) {
      for (let t = 0; t < n; t++) {
        for (let h = 0; h < c.numKvHeads; h++) {
          const want = row(src, c, t, h);
          const got = codec.readRow(0, h, t, which);
          for (let g = 0; g < c.headDim; g += group) {
            const part = want.subarray(g, g + group);
            const range = Math.max(...part) - Math.min(...part);
            const tol = (0.5 * range) / (2 ** bits - 1) + 2e-3 * range + 1e-3;
            for (let i = g; i < Math.min(c.headDim, g + group); i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(tol);
          }
        }
      }
    }
    const groups = Math.ceil(c.headDim / group);
    const slotBytes = Math.ceil(c.headDim / 64) * 8 * bits + groups * 4;
    expect(codec.bytes([n, 0])).toBe(2 * n * c.numKvHeads * slotBytes + 2 * c.numLayers * (bits <= 4 ? 4 * 2 ** bits : 0)); // a LUT per layer and stream
    codec.free();
  });

  it('bf16 stores round-to-nearest-even bfloat16 rows, 16 bits per number', () => {
    const c = config();
    const r = rng(9);
    const n = 12;
    const keys = randomF32(r, n * c.numKvHeads * c.headDim, 5);
    const values = randomF32(r, n * c.numKvHeads * c.headDim, 5);
    const pos = Int32Array.from({ length: n }, (_, i) => i);
    const codec = makeCodec(ref, c, 'bf16');
    write(ref, codec, c, 0, keys.slice(), values, pos);
    const rot = roped(ref, keys, n, c, pos, 'half');
    const bf = (x: Float32Array) => Float32Array.from(toBf16(x), (h) => new Float32Array(new Uint32Array([h << 16]).buffer)[0]!);
    for (let t = 0; t < n; t++) {
      expect(Array.from(codec.readRow(0, 1, t, 'value'))).toEqual(Array.from(bf(row(values, c, t, 1).slice())));
      expect(Array.from(codec.readRow(0, 0, t, 'key'))).toEqual(Array.from(bf(row(rot, c, t, 0).slice())));
    }
    expect(codec.bitsPerValue()).toBe(16);
    expect(toBf16(new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, -0]))).toEqual(new Uint16Array([0x3f80, 0x3f82, 0x8000])); // ties to even
    codec.free();
  });

  it('int4 group 64 on a 64-wide head stores 4.5 bits per number', () => {
    const codec = makeCodec(ref, config(), 'int(bits=4,group=64)');
    expect(codec.bitsPerValue()).toBe(4.5);
    codec.free();
  });

  it('constant vectors (zero range) come back exactly; extreme inputs stay finite through attention', () => {
    const c = config();
    for (const spec of ['int(bits=4)', 'int(bits=2,axis=token,group=32)', 'kvquant(bits=3,calibrate=1)', 'kvquant(bits=2,outliers=0,calibrate=1)']) {
      const n = 8;
      const keys = new Float32Array(n * c.numKvHeads * c.headDim).fill(0.375);
      const values = new Float32Array(n * c.numKvHeads * c.headDim).fill(-1.25);
      const codec = makeCodec(ref, c, spec);
      write(ref, codec, c, 0, keys, values, Int32Array.from({ length: n }, (_, i) => i));
      for (let t = 0; t < n; t++) expect(Array.from(codec.readRow(0, 1, t, 'value'))).toEqual(new Array(c.headDim).fill(-1.25));
      codec.free();
    }
    for (const spec of ['int(bits=4)', 'int(bits=8,kaxis=channel,group=32)', 'kvquant(bits=2,calibrate=1)', 'kvquant(bits=4,prerope=false,calibrate=1)']) {
      const r = rng(3);
      const n = 40;
      const huge = (len: number) => Float32Array.from({ length: len }, () => (r() < 0.5 ? -1 : 1) * 10 ** (r() * 38));
      const codec = makeCodec(wasm, c, spec);
      const pos = Int32Array.from({ length: n }, (_, i) => i);
      write(wasm, codec, c, 0, huge(n * c.numKvHeads * c.headDim), huge(n * c.numKvHeads * c.headDim), pos);
      const q = put(wasm, randomF32(r, c.numHeads * c.headDim, 1e-3));
      const out = wasm.arena.alloc(c.numHeads * c.headDim * 4);
      const positions = put(wasm, new Int32Array(c.numKvHeads * 256).map((_, i) => i % 256));
      codec.attention(0, { q, out, n: 1, visible: n, positions, lastProbs: 0, received: 0 });
      for (const v of wasm.arena.f32(out, c.numHeads * c.headDim)) expect(Number.isFinite(v), spec).toBe(true);
      for (let t = 0; t < n; t++) for (const v of codec.readRow(0, 0, t, 'value')) expect(Number.isFinite(v)).toBe(true);
      codec.free();
    }
  });

  it('kvquant keeps a huge outlier exactly (f16) in both keys and values, and the sink token in f16', () => {
    const c = config();
    const r = rng(11);
    const n = 64;
    const keys = randomF32(r, n * c.numKvHeads * c.headDim, 1);
    const values = randomF32(r, n * c.numKvHeads * c.headDim, 1);
    const t0 = 50;
    row(keys, c, t0, 1)[17] = 900;
    row(values, c, t0, 1)[5] = -700;
    const pos = Int32Array.from({ length: n }, (_, i) => i);
    const codec = makeCodec(ref, c, 'kvquant(bits=2,outliers=0.01,prerope=true,calibrate=1)');
    write(ref, codec, c, 0, keys.slice(), values, pos);
    expect(codec.readRow(0, 1, t0, 'value')[5]).toBe(-700);
    // pre-RoPE: the key row comes back rotated; the outlier's pair partner carries it
    const rot = roped(ref, keys, n, c, pos, 'half');
    const got = codec.readRow(0, 1, t0, 'key');
    expect(Math.abs(got[17]! - row(rot, c, t0, 1)[17]!)).toBeLessThan(0.5);
    expect(Math.abs(got[17 + 32]! - row(rot, c, t0, 1)[17 + 32]!)).toBeLessThan(0.5);
    // sink: position 0 is f16 exactly
    const sinkWant = Float32Array.from(row(values, c, 0, 0), (v) => f16ToF32(f32ToF16(v)));
    expect(Array.from(codec.readRow(0, 0, 0, 'value'))).toEqual(Array.from(sinkWant));
    codec.free();
  });

  it.each(['half', 'interleaved'] as const)('pre-RoPE keys (%s layout): decoded keys match RoPE of the dequantized pre-RoPE keys', (layout) => {
    const c = config({ ropeLayout: layout });
    const r = rng(5);
    const n = 48;
    const keys = randomF32(r, n * c.numKvHeads * c.headDim, 1);
    const pos = Int32Array.from({ length: n }, (_, i) => 3000 + i * 37); // hi table rows beyond the first
    const pre = makeCodec(ref, c, 'kvquant(bits=4,outliers=0,sinks=0,prerope=true,calibrate=1)');
    write(ref, pre, c, 0, keys.slice(), keys.slice(), pos);
    const want = roped(ref, keys, n, c, pos, layout);
    const bound = 0.25; // 4-bit NF over a [-1, 1] channel range: half the widest gap
    for (let t = 0; t < n; t++) {
      const got = pre.readRow(0, 1, t, 'key');
      const w = row(want, c, t, 1);
      // rotation is an isometry: the error norm is the pre-RoPE quantization error's norm
      let err = 0;
      for (let i = 0; i < c.headDim; i++) err = Math.max(err, Math.abs(got[i]! - w[i]!));
      expect(err).toBeLessThan(bound * Math.SQRT2);
      void t;
    }
    // RoPE fusion exactly: the same codes stored at position 0 (no rotation), rotated by the reference RoPE
    const flat = makeCodec(ref, c, 'kvquant(bits=4,outliers=0,sinks=0,prerope=true,calibrate=1)');
    write(ref, flat, c, 0, keys.slice(), keys.slice(), new Int32Array(n));
    const dequant = new Float32Array(keys.length);
    for (let t = 0; t < n; t++) for (let h = 0; h < c.numKvHeads; h++) dequant.set(flat.readRow(0, h, t, 'key'), (t * c.numKvHeads + h) * c.headDim);
    const fused = roped(ref, dequant, n, c, pos, layout);
    for (let t = 0; t < n; t++) for (let h = 0; h < c.numKvHeads; h++) expectClose(pre.readRow(0, h, t, 'key'), row(fused, c, t, h).slice(), 1e-5, 2e-6, `RoPE fusion, token ${t}`);
    flat.free();
    pre.free();
  });

  it('KIVI: a residual window spanning a group boundary stays f16 until its group fills; wasm attention = reference', () => {
    const c = config();
    const spec = 'int(kbits=2,vbits=2,kaxis=channel,vaxis=token,group=32,residual=40)';
    const r = rng(21);
    const total = 150;
    const keys = randomF32(r, total * c.numKvHeads * c.headDim, 1);
    const values = randomF32(r, total * c.numKvHeads * c.headDim, 1);
    const pos = Int32Array.from({ length: total }, (_, i) => i);
    const rot = roped(ref, keys, total, c, pos, 'half');
    const codecs = [makeCodec(ref, c, spec, 64), makeCodec(wasm, c, spec, 64)];
    const q = randomF32(r, c.numHeads * c.headDim, 2);
    let from = 0;
    for (const n of [1, 5, 30, 1, 1, 33, 40, 39]) {
      for (const [i, k] of [ref, wasm].entries()) {
        if (from + n > 64 * 2 ** 0 && i >= 0) codecs[i]!.resize(Math.max(256, from + n), [from, from]);
        const sl = (a: Float32Array) => a.slice(from * c.numKvHeads * c.headDim, (from + n) * c.numKvHeads * c.headDim);
        write(k, codecs[i]!, c, from, sl(keys), sl(values), pos.slice(from, from + n));
      }
      from += n;
      // keys in the ring (not yet a whole quantized group beyond the window) are f16 exactly
      const quantized = Math.max(0, Math.floor((from - 40) / 32)) * 32;
      for (let s = Math.max(0, from - 40); s < from; s++) {
        expect(s).toBeGreaterThanOrEqual(quantized);
        const got = codecs[0]!.readRow(0, 0, s, 'key');
        const want = Float32Array.from(row(rot, c, s, 0), (v) => f16ToF32(f32ToF16(v)));
        expect(Array.from(got), `slot ${s} after ${from}`).toEqual(Array.from(want));
      }
      if (quantized > 0) {
        const exact = Float32Array.from(row(rot, c, 0, 0), (v) => f16ToF32(f32ToF16(v)));
        expect(Array.from(codecs[0]!.readRow(0, 0, 0, 'key'))).not.toEqual(Array.from(exact)); // 2-bit codes now
      }
      // attention over everything so far, wasm kernel vs scalar reference on the same codec state
      const outs = [ref, wasm].map((k, i) => {
        const qp = put(k, q);
        const out = k.arena.alloc(q.length * 4);
        const positions = put(k, new Int32Array(c.numKvHeads * 256).map((_, j) => j % 256));
        codecs[i]!.attention(0, { q: qp, out, n: 1, visible: from, positions, lastProbs: 0, received: 0 });
        return k.arena.f32(out, q.length).slice();
      });
      expectClose(outs[1]!, outs[0]!, 2e-4, 2e-5, `KIVI after ${from} tokens`);
    }
    // bytes: 2-bit codes + per-token params for values, per-channel params per full group for keys, rings
    expect(codecs[0]!.bytes([from, 0])).toBeGreaterThan(0);
    for (const x of codecs) x.free();
  });

  it('refuses eviction where slot order matters, allows it for per-token and kvquant codecs; move carries a slot', () => {
    const c = config();
    for (const spec of ['h2o(budget=64)+int(kaxis=channel)', 'window(sinks=4,recent=60)+int(bits=4,residual=16)']) {
      expect(() => createCache(ref, c, parseSpec(spec), 16)).toThrow(UsageError);
    }
    createCache(ref, c, parseSpec('h2o(budget=64)+kvquant(bits=3)'), 16).free();
    createCache(ref, c, parseSpec('full+int(kaxis=channel,residual=128)'), 16).free();
    for (const spec of ['int(bits=3)', 'kvquant(bits=3)', 'kvquant(bits=3,calibrate=1)']) {
      const codec = makeCodec(ref, c, spec);
      const r = rng(2);
      const n = 10;
      write(ref, codec, c, 0, randomF32(r, n * c.numKvHeads * c.headDim), randomF32(r, n * c.numKvHeads * c.headDim), Int32Array.from({ length: n }, (_, i) => i));
      const k7 = codec.readRow(0, 1, 7, 'key');
      const v7 = codec.readRow(0, 1, 7, 'value');
      codec.move(0, 1, 7, 2);
      expect(Array.from(codec.readRow(0, 1, 2, 'key'))).toEqual(Array.from(k7));
      expect(Array.from(codec.readRow(0, 1, 2, 'value'))).toEqual(Array.from(v7));
      codec.free();
    }
  });

  it('NormalFloat signposts are sorted, symmetric in range, include 0, and 2^bits long', () => {
    for (const bits of [2, 3, 4]) {
      const nf = normalFloat(bits);
      expect(nf.length).toBe(2 ** bits);
      expect(nf[0]).toBe(-1);
      expect(nf[nf.length - 1]).toBe(1);
      expect(nf).toContain(0);
      for (let i = 1; i < nf.length; i++) expect(nf[i]!).toBeGreaterThan(nf[i - 1]!);
    }
    expect(() => makeCodec(ref, config(), 'kvquant(datatype=nuq)')).toThrow(UsageError);
  });
});
