// Decode steps of a whole model over a long synthetic cache, per KV codec and attention mode: CPU time
// per step (the process's, all threads) and the wall clock, best of several rounds with the codecs'
// rounds interleaved (steadier than one pass each on a busy machine). Caches are filled as the kvcache
// bench fills them (src/bench/kvcache.ts). Needs `npm run build` first.
// Usage: node scripts/bench-kv-decode.mjs --model FILE.gguf [--len 16384] [--threads 2]
//   [--codecs 'fp16;int(bits=4)@exact;int(bits=4)@fast'] [--rounds 4] [--steps 8]
import os from 'node:os';
import { createCache } from '../dist/cache/build.js';
import { parseSpec } from '../dist/cache/registry.js';
import { fillSynthetic } from '../dist/bench/kvcache.js';
import { loadModel } from '../dist/engine/model.js';
import { Activations, forward } from '../dist/model/forward.js';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const file = opt('model');
if (!file) {
  console.error('usage: node scripts/bench-kv-decode.mjs --model FILE.gguf [--len N] [--threads N] [--codecs SPEC@MODE;…] [--rounds N] [--steps N]');
  process.exit(2);
}
const n = Number(opt('len', '16384'));
const threads = Number(opt('threads', '2'));
const rounds = Number(opt('rounds', '4'));
const steps = Number(opt('steps', '8'));
const specs = opt('codecs', 'fp16;int(bits=4)@exact;int(bits=4)@fast').split(';');

const model = await loadModel(file, { threads });
const k = model.kernels;
const c = model.config;
const runs = [];
for (const spec of specs) {
  const [codecSpec, attention] = spec.split('@');
  const cache = createCache(k, c, parseSpec(`full+${codecSpec}`), n + steps + 8, attention ? { attention } : {});
  // the cache's own codec, reached around its API (as the kvcache bench does): tokens written without attending
  fillSynthetic(k, cache.codec, c, n);
  runs.push({ spec, cache, activations: new Activations(model.weights, c, 1), cpu: Infinity, wall: Infinity });
}
console.log(`load average (1 min) at start: ${os.loadavg()[0].toFixed(2)}`);
for (let round = 0; round < rounds; round++) {
  for (const r of runs) {
    const step = (i) => forward(c, model.weights, r.activations, r.cache, [100 + i], [n + i], false);
    r.cache.lengths.fill(n);
    for (let i = 0; i < 2; i++) step(i); // warm-up
    r.cache.lengths.fill(n);
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) step(i);
    const wall = (performance.now() - t0) / steps;
    const u = process.cpuUsage(c0);
    r.cpu = Math.min(r.cpu, (u.user + u.system) / 1e3 / steps);
    r.wall = Math.min(r.wall, wall);
  }
}
const base = runs[0];
for (const r of runs) {
  console.log(`${r.spec.padEnd(24)} T=${n} threads=${threads}: ${r.cpu.toFixed(1)} ms CPU/token (× ${base.spec} ${(base.cpu / r.cpu).toFixed(2)}), ` +
    `${(1000 / r.wall).toFixed(2)} tok/s wall (× ${(base.wall / r.wall).toFixed(2)})`);
  r.activations.free();
  r.cache.free();
}
console.log(`load average (1 min) at end: ${os.loadavg()[0].toFixed(2)}`);
await model.close();
