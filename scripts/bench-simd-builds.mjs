// Micro-benchmark of the two kernel builds (SIMD128, relaxed SIMD) on matvecs (or, --tokens n, the
// prefill matmul of n tokens): µs per token for each weight dtype, the fast way (8-bit activations, integer dot products) and the exact way,
// both builds in one process and timed in turns (a burst of load hits both). Markdown to stdout, with
// the load average. Needs `npm run build` first.
// Usage: node scripts/bench-simd-builds.mjs [--dtypes q4_k,q6_k,...] [--shape 2048x2048] [--tokens 1] [--reps 400]
import os from 'node:os';
import { createKernels } from '../dist/kernels/index.js';
import { BLOCK_FORMATS } from '../dist/kernels/ggml/index.js';
import { f32ToF16 } from '../dist/kernels/half.js';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const dtypes = opt('dtypes', 'f16,bf16,q8_0,q4_0,q4_1,q5_0,q5_1,q2_k,q3_k,q4_k,q5_k,q6_k,iq4_nl,iq4_xs').split(',');
const [rows, cols] = opt('shape', '2048x2048').split('x').map(Number);
const n = Number(opt('tokens', '1'));
const reps = Number(opt('reps', String(Math.max(10, Math.round(400 / n)))));
/** Byte offsets of each block format's f16 scales (the rest of a block may be any bits). */
const HALF_FIELDS = { q4_0: [0], q4_1: [0, 2], q5_0: [0], q5_1: [0, 2], q8_0: [0], q2_k: [80, 82], q3_k: [108], q4_k: [0, 2], q5_k: [0, 2], q6_k: [208], iq4_nl: [0], iq4_xs: [0] };

let seed = 1;
const random = () => (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32;

const kernels = [];
for (const simd of ['simd128', 'relaxed']) {
  process.env.KVPACK_SIMD = simd;
  for (const matmul of ['exact', 'fast']) kernels.push({ simd, matmul, k: await createKernels({ backend: 'wasm', threads: 1, matmul }) });
}
const load0 = os.loadavg()[0];
const lines = [
  `| dtype | SIMD128 exact µs | SIMD128 fast µs | relaxed exact µs | relaxed fast µs | fast: relaxed speed-up |`,
  '|---|---:|---:|---:|---:|---:|',
];
for (const dtype of dtypes) {
  const f = BLOCK_FORMATS[dtype];
  const bytes = f ? (rows * cols / f.blockValues) * f.blockBytes : rows * cols * 2;
  const src = new Uint8Array(bytes);
  const view = new DataView(src.buffer);
  if (f) {
    for (let i = 0; i < bytes; i++) src[i] = random() * 256;
    for (let b = 0; b < bytes / f.blockBytes; b++) for (const at of HALF_FIELDS[dtype]) view.setUint16(b * f.blockBytes + at, f32ToF16((random() - 0.3) * 0.01), true);
  } else {
    // f16 / bf16 weights N(0, 0.02)-sized
    for (let i = 0; i < rows * cols; i++) {
      const v = (random() - 0.5) * 0.04;
      view.setUint16(i * 2, dtype === 'f16' ? f32ToF16(v) : new Uint32Array(new Float32Array([v]).buffer)[0] >>> 16, true);
    }
  }
  const x = Float32Array.from({ length: n * cols }, () => random() - 0.5);
  const setups = kernels.map(({ k }) => {
    const w = { ptr: k.arena.alloc(bytes), dtype, rows, cols };
    k.arena.u8(w.ptr, bytes).set(src);
    const xp = k.arena.alloc(n * cols * 4);
    k.arena.f32(xp, n * cols).set(x);
    return { k, w, xp, out: k.arena.alloc(n * rows * 4), best: Infinity };
  });
  // best of many single calls, in turns: a call short enough to often run unpreempted on a busy machine
  for (let rep = 0; rep < reps; rep++) {
    for (const s of setups) {
      const t0 = performance.now();
      s.k.matmul(s.out, s.xp, s.w, n);
      s.best = Math.min(s.best, performance.now() - t0);
    }
  }
  const us = setups.map((s) => (s.best * 1000) / n);
  lines.push(`| ${dtype} | ${us.map((u) => u.toFixed(0)).join(' | ')} | ${(us[1] / us[3]).toFixed(2)}× |`);
  for (const s of setups) for (const p of [s.w.ptr, s.xp, s.out]) s.k.arena.free(p);
}
for (const { k } of kernels) await k.close();
console.log(`${n === 1 ? 'One-token matvec' : `Matmul of ${n} tokens, µs per token`}, ${rows}×${cols}, 1 thread, best of ${reps} calls each (${os.cpus()[0]?.model ?? '?'}, Node ${process.version}).`);
console.log(`Load average (1 min): ${load0.toFixed(1)} at start, ${os.loadavg()[0].toFixed(1)} at end, on ${os.availableParallelism()} cores.\n`);
console.log(lines.join('\n'));
