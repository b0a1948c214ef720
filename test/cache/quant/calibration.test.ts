import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Codec } from '../../../src/cache/codec.js';
import { CODECS, parseSpec } from '../../../src/cache/registry.js';
import { withDefaults } from '../../../src/cache/spec.js';
import { evalChunks, loadEvalTokens } from '../../../src/eval/data.js';
import type { Kernels } from '../../../src/kernels/api.js';
import { f16ToF32, f32ToF16 } from '../../../src/kernels/half.js';
import { createKernels } from '../../../src/kernels/index.js';
import { ropeOf } from '../../../src/kernels/rope.js';
import type { ModelConfig } from '../../../src/model/config.js';
import type { Model } from '../../../src/engine/model.js';
import { REF6M_DIR, withModel } from '../../engine/helpers.js';
import { expectClose, put, randomF32, rng } from '../../kernels/util.js';

/**
 * kvquant's online calibration: thresholds come from the first `calibrate` tokens of a sequence,
 * which stay f16 until then, so one-token writes (decode mode) calibrate like a chunk does.
 */

const config: ModelConfig = {
  architecture: 'llama', hiddenSize: 256, intermediateSize: 512, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 64,
  vocabSize: 100, maxContext: 4096, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: true, qkvBias: false,
} as ModelConfig;
const c = config;
const width = c.numKvHeads * c.headDim;

function makeCodec(k: Kernels, spec: string, capacity = 64): Codec {
  const part = parseSpec(spec).codec;
  const kind = CODECS.get(part.name)!;
  return kind.create(withDefaults(part, kind.schema), { kernels: k, config: c, capacity, rope: ropeOf(c), ropeOnRead: false });
}

/** Writes tokens [from, to) of the given rows to slots from… of layer 0. */
function write(k: Kernels, codec: Codec, keys: Float32Array, values: Float32Array, from: number, to: number): void {
  const kp = put(k, keys.slice(from * width, to * width));
  const vp = put(k, values.slice(from * width, to * width));
  const pp = put(k, Int32Array.from({ length: to - from }, (_, i) => from + i));
  codec.write(0, from, to - from, kp, vp, pp);
  for (const p of [kp, vp, pp]) k.arena.free(p);
}

const f16 = (x: Float32Array): Float32Array => Float32Array.from(x, (v) => f16ToF32(f32ToF16(v)));
const rows = (codec: Codec, n: number, which: 'key' | 'value'): number[][] =>
  Array.from({ length: n * c.numKvHeads }, (_, i) => Array.from(codec.readRow(0, i % c.numKvHeads, Math.floor(i / c.numKvHeads), which)));

describe('kvquant calibration', () => {
  let ref: Kernels;
  let wasm: Kernels;
  beforeAll(async () => {
    ref = await createKernels({ backend: 'reference' });
    wasm = await createKernels({ backend: 'wasm', threads: 2 });
  });
  afterAll(async () => wasm?.close());

  it('staged tokens are f16 rows and count as f16 bytes; after calibration bytes drop to the packed size', () => {
    const r = rng(41);
    const n = 40;
    const keys = f16(randomF32(r, n * width, 2)); // f16-exact, so staging loses nothing
    const values = f16(randomF32(r, n * width, 2));
    const spec = 'kvquant(bits=4,calibrate=16)';
    const staged = makeCodec(ref, spec);
    write(ref, staged, keys, values, 0, 1);
    write(ref, staged, keys, values, 1, 10);
    // values read back exactly (f16 storage, not codes)
    for (let t = 0; t < 10; t++) for (let h = 0; h < c.numKvHeads; h++) {
      expect(Array.from(staged.readRow(0, h, t, 'value'))).toEqual(Array.from(values.subarray((t * c.numKvHeads + h) * c.headDim, (t * c.numKvHeads + h + 1) * c.headDim)));
    }
    const f16Token = 2 * c.numKvHeads * c.headDim * 2; // key + value rows per token, all heads
    expect(staged.bytes([10, 0]) - staged.bytes([9, 0])).toBe(f16Token);

    write(ref, staged, keys, values, 10, 17); // 16 non-sink tokens: calibrates and quantizes in place
    write(ref, staged, keys, values, 17, n);
    const packedToken = c.numKvHeads * ((64 * 4) / 8 * 2 + 4 + 2 * Math.ceil(0.01 * 64) * 4); // codes, value scale/zero, outliers
    expect(staged.bytes([n, 0]) - staged.bytes([n - 1, 0])).toBe(packedToken);

    // the same as calibrating on one write of those 17 tokens: same thresholds, same codes
    const direct = makeCodec(ref, spec);
    write(ref, direct, keys, values, 0, 17);
    write(ref, direct, keys, values, 17, n);
    expect(staged.bytes([n, 0])).toBe(direct.bytes([n, 0]));
    expect(rows(staged, n, 'key')).toEqual(rows(direct, n, 'key'));
    expect(rows(staged, n, 'value')).toEqual(rows(direct, n, 'value'));
    const oneToken = makeCodecWith(ref, 'kvquant(bits=4,calibrate=1)', keys, values, n); // the old behaviour
    expect(rows(staged, n, 'key')).not.toEqual(rows(oneToken, n, 'key'));
    for (const x of [staged, direct, oneToken]) x.free();
  });

  function makeCodecWith(k: Kernels, spec: string, keys: Float32Array, values: Float32Array, n: number): Codec {
    const codec = makeCodec(k, spec);
    for (let t = 0; t < n; t++) write(k, codec, keys, values, t, t + 1);
    return codec;
  }

  it('move and resize while staged keep the f16 rows; a write at slot 0 starts calibration again; wasm attention = reference', () => {
    const r = rng(43);
    const n = 30;
    const keys = f16(randomF32(r, n * width, 1));
    const values = f16(randomF32(r, n * width, 1));
    const spec = 'kvquant(bits=3,calibrate=20)';
    const codecs = [makeCodec(ref, spec, 8), makeCodec(wasm, spec, 8)];
    for (const [i, k] of [ref, wasm].entries()) {
      write(k, codecs[i]!, keys, values, 0, 6);
      codecs[i]!.resize(32, [6, 0]);
      write(k, codecs[i]!, keys, values, 6, 12);
    }
    const k7 = codecs[0]!.readRow(0, 1, 7, 'key');
    const v7 = codecs[0]!.readRow(0, 1, 7, 'value');
    for (const x of codecs) x.move(0, 1, 7, 2);
    expect(Array.from(codecs[0]!.readRow(0, 1, 2, 'key'))).toEqual(Array.from(k7));
    expect(Array.from(codecs[0]!.readRow(0, 1, 2, 'value'))).toEqual(Array.from(v7));
    const q = randomF32(r, c.numHeads * c.headDim, 2);
    const attend = (visible: number): Float32Array[] => [ref, wasm].map((k, i) => {
      const qp = put(k, q);
      const out = k.arena.alloc(q.length * 4);
      const positions = put(k, new Int32Array(c.numKvHeads * 32).map((_, j) => j % 32));
      codecs[i]!.attention(0, { q: qp, out, n: 1, visible, positions, lastProbs: 0, received: 0 });
      return k.arena.f32(out, q.length).slice();
    });
    const [a, b] = attend(12);
    expectClose(b!, a!, 2e-4, 2e-5, 'staged attention');
    // a new sequence: written again from slot 0, nothing of the old one's calibration is kept
    const fresh = makeCodec(ref, spec, 32);
    for (const [i, k] of [ref, wasm].entries()) write(k, codecs[i]!, keys, values, 0, n);
    write(ref, fresh, keys, values, 0, n);
    expect(rows(codecs[0]!, n, 'key')).toEqual(rows(fresh, n, 'key'));
    const [a2, b2] = attend(n);
    expectClose(b2!, a2!, 2e-4, 2e-5, 'calibrated attention');
    for (const x of [...codecs, fresh]) x.free();
  });
});

describe('kvquant decode mode (ref-6m, wikitext2, 256 tokens)', () => {
  let model: Model;
  withModel(REF6M_DIR, (m) => (model = m), { threads: 2 });

  it('one token at a time scores like chunks: thresholds are not taken from a single token', () => {
    const [a, b] = evalChunks(loadEvalTokens('wikitext2', model.tokenizer), 256, 2, 'wikitext2');
    const cache = 'kvquant(bits=4)';
    const fresh = (ids: number[], mode: 'chunked' | 'decode'): Float64Array => {
      const s = model.session({ cache });
      const out = s.score(ids, { mode });
      s.dispose();
      return out;
    };
    const chunked = fresh(a!, 'chunked');
    const decode = fresh(a!, 'decode');
    const ppl = (lp: Float64Array): number => Math.exp(-lp.reduce((s, x) => s + x, 0) / lp.length);
    const meanAbs = decode.reduce((s, x, i) => s + Math.abs(x - chunked[i]!), 0) / decode.length;
    expect(Math.abs(ppl(decode) / ppl(chunked) - 1)).toBeLessThan(0.01);
    expect(meanAbs).toBeLessThan(0.05); // about the quantization noise vs the full cache (0.03); 0.42 from one-token thresholds
    // after reset a sequence calibrates on its own tokens: same as in a fresh session
    const session = model.session({ cache });
    session.score(a!, { mode: 'chunked' });
    session.reset();
    const second = session.score(b!, { mode: 'decode' });
    session.dispose();
    expect(Array.from(second)).toEqual(Array.from(fresh(b!, 'decode')));
  });
});
