// Micro-benchmark of decode attention over a long cache, one layer of the SmolLM2-135M shape (9 query
// heads, 3 KV heads, head dim 64): ms per single-query attention call for each KV codec, filled with
// synthetic keys/values through the codec's own write path. Needs `npm run build` first.
// Usage: node scripts/bench-kv-attention.mjs [--len 16384] [--threads 1,2] [--codecs 'fp16;int(bits=4);kvquant(bits=3)']
//   [--attention exact,fast] (packed codecs run once per mode; float codecs ignore it) [--rounds 1] (best of N
//   timings per row, the rows' rounds interleaved: steadier on a busy machine) [--layers 1] (caches of N layers,
//   called in turn: with N = 30 the working set is the model's, read from memory rather than the CPU's caches)
import os from 'node:os';
import { buildCache } from '../dist/cache/build.js';
import { parseSpec } from '../dist/cache/registry.js';
import { fillSynthetic, synthetic } from '../dist/bench/kvcache.js';
import { createKernels } from '../dist/kernels/index.js';
import { time } from './timing.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const len = Number(opt('len', '16384'));
const threadCounts = opt('threads', '1,2').split(',').map(Number);
const codecs = opt('codecs', 'fp16;int(bits=4);kvquant(bits=3);kvquant(bits=2)').split(';');
const modes = opt('attention', 'exact').split(',');
const rounds = Number(opt('rounds', '1'));
const layers = Number(opt('layers', '1'));
const packed = (spec) => /^(int|kvquant|turboquant)\(/.test(spec);
const config = {
  architecture: 'llama', hiddenSize: 576, intermediateSize: 1536, numLayers: 1, numHeads: 9, numKvHeads: 3, headDim: 64,
  vocabSize: 49152, maxContext: 65536, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: true, qkvBias: false,
};
config.numLayers = layers;


console.log(`load average (1 min) at start: ${os.loadavg()[0].toFixed(2)}`);
for (const threads of threadCounts) {
  const k = await createKernels({ backend: 'wasm', threads });
  const { numHeads, numKvHeads, headDim: d } = config;
  const rows = [];
  for (const [spec, attention] of codecs.flatMap((s) => (packed(s) ? modes.map((m) => [s, m]) : [[s, '—']]))) {
    const { codec } = buildCache(k, config, parseSpec(`full+${spec}`), len + 8, attention === '—' ? {} : { attention });
    fillSynthetic(k, codec, config, len);
    const q = k.arena.alloc(numHeads * d * 4), out = k.arena.alloc(numHeads * d * 4);
    k.arena.f32(q, numHeads * d).set(synthetic(numHeads * d, d, 3));
    const positions = k.arena.alloc((len + 8) * numKvHeads * 4);
    const pos = k.arena.i32(positions, (len + 8) * numKvHeads);
    for (let h = 0; h < numKvHeads; h++) for (let s = 0; s < len + 8; s++) pos[h * (len + 8) + s] = s;
    let layer = 0;
    const call = () => codec.attention((layer = (layer + 1) % layers), { q, out, n: 1, visible: len - 1, positions, lastProbs: 0, received: 0 });
    rows.push({ spec, attention, codec, call, wall: Infinity, cpu: Infinity, free: () => { codec.free(); for (const p of [q, out, positions]) k.arena.free(p); } });
  }
  for (let round = 0; round < rounds; round++) {
    for (const r of rows) {
      const { seconds, cpuSeconds } = time(r.call, 400);
      r.wall = Math.min(r.wall, seconds * 1e3);
      r.cpu = Math.min(r.cpu, cpuSeconds * 1e3);
    }
  }
  for (const r of rows) {
    console.log(`threads=${threads} ${r.spec.padEnd(18)} ${r.attention.padEnd(5)} T=${len}: ${r.wall.toFixed(3)} ms/layer wall, ${r.cpu.toFixed(3)} ms CPU (all threads)${layers > 1 ? `, ${layers} layers in turn` : ''}`);
    r.free();
  }
  await k.close();
}
console.log(`load average (1 min) at end: ${os.loadavg()[0].toFixed(2)}`);
