import { afterAll, beforeAll } from 'vitest';
import type { Codec } from '../../../src/cache/codec.js';
import { CODECS, parseSpec } from '../../../src/cache/registry.js';
import { withDefaults } from '../../../src/cache/spec.js';
import type { Kernels } from '../../../src/kernels/api.js';
import { createKernels } from '../../../src/kernels/index.js';
import { ropeOf } from '../../../src/kernels/rope.js';
import type { ModelConfig } from '../../../src/model/config.js';
import { put } from '../../kernels/util.js';

/** A small Llama shape for codec tests (2 layers, 4 heads over 2 KV heads of 64). */
export const quantConfig = (over: Partial<ModelConfig> = {}): ModelConfig => ({
  architecture: 'llama', hiddenSize: 256, intermediateSize: 512, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 64,
  vocabSize: 100, maxContext: 4096, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: true, qkvBias: false, ...over,
} as ModelConfig);

/** The codec of a spec's codec part, as the cache builder makes it. */
export function makeCodec(k: Kernels, c: ModelConfig, spec: string, capacity = 64, ropeOnRead = false): Codec {
  const part = parseSpec(spec).codec;
  const kind = CODECS.get(part.name)!;
  return kind.create(withDefaults(part, kind.schema), { kernels: k, config: c, capacity, rope: ropeOf(c), ropeOnRead });
}

/** Both kernel sets, made before a file's tests and closed after them. */
export function bothKernels(): { ref: Kernels; wasm: Kernels } {
  const kernels = {} as { ref: Kernels; wasm: Kernels };
  beforeAll(async () => {
    kernels.ref = await createKernels({ backend: 'reference' });
    kernels.wasm = await createKernels({ backend: 'wasm', threads: 2 });
  });
  afterAll(async () => kernels.wasm?.close());
  return kernels;
}

/** Writes n tokens at positions 0..n-1 of `layer`; returns the keys after RoPE (what readRow gives back). */
export function writeTokens(k: Kernels, codec: Codec, c: ModelConfig, keys: Float32Array, values: Float32Array, n: number, layer = 0): Float32Array {
  const pos = put(k, Int32Array.from({ length: n }, (_, i) => i));
  const kp = put(k, keys);
  const vp = put(k, values);
  const roped = put(k, keys);
  k.rope(roped, n, c.numKvHeads, pos, ropeOf(c));
  const want = k.arena.f32(roped, keys.length).slice();
  codec.write(layer, 0, n, kp, vp, pos);
  for (const p of [pos, kp, vp, roped]) k.arena.free(p);
  return want;
}

/** Softmax attention of one query over a codec's decoded rows (readRow) of layer 0, in f64: output and probabilities. */
export function attendDecoded(codec: Codec, c: ModelConfig, q: Float32Array, n: number): { out: Float64Array; probs: Float64Array } {
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

/** Runs one query (n = 1) of the codec's attention over `visible` slots of layer 0: its output and last probabilities. */
export function attendCodec(k: Kernels, codec: Codec, c: ModelConfig, q: Float32Array, visible: number, capacity = 64): { out: Float32Array; probs: Float32Array } {
  const qp = put(k, q);
  const out = k.arena.alloc(c.numHeads * c.headDim * 4);
  const lastProbs = k.arena.alloc(c.numHeads * capacity * 4);
  const positions = put(k, new Int32Array(c.numKvHeads * capacity).map((_, i) => i % capacity));
  codec.attention(0, { q: qp, out, n: 1, visible, positions, lastProbs, received: 0 });
  const result = { out: k.arena.f32(out, c.numHeads * c.headDim).slice(), probs: k.arena.f32(lastProbs, c.numHeads * capacity).slice() };
  for (const p of [qp, out, lastProbs, positions]) k.arena.free(p);
  return result;
}
