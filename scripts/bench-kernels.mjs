// Micro-benchmark of the wasm matmul kernels: GFLOP/s (2·n·rows·cols per call) for matvec (n=1) and
// chunked-prefill matmul (n>1), per weight dtype, shape and thread count. Needs `npm run build` first.
// Usage: node scripts/bench-kernels.mjs [--dtypes f32,f16,bf16,q8_0] [--shapes 576x576,1536x576] [--n 128] [--attention]
import { createKernels } from '../dist/kernels/index.js';
import { time } from './timing.mjs';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const dtypes = opt('dtypes', 'f32,f16,q8_0').split(',');
const prefillN = Number(opt('n', '128'));
const shapes = opt('shapes', '576x576,1536x576,576x1536').split(',').map((s) => s.split('x').map(Number));
const bytesPer = { f32: 4, f16: 2, bf16: 2, q8_0: 34 / 32 };

function fill(k, ptr, bytes) {
  const u = k.arena.u8(ptr, bytes);
  for (let i = 0; i < bytes; i++) u[i] = (i * 2654435761) >>> 24;
}

for (const threads of [1, 2]) {
  const k = await createKernels({ backend: 'wasm', threads });
  for (const dtype of dtypes) {
    for (const [rows, cols] of shapes) {
      const wBytes = Math.ceil(rows * cols * bytesPer[dtype]);
      const w = { ptr: k.arena.alloc(wBytes), dtype, rows, cols };
      fill(k, w.ptr, wBytes);
      if (dtype !== 'q8_0') {
        // keep the values finite: small floats
        if (dtype === 'f32') k.arena.f32(w.ptr, rows * cols).forEach((_, i, a) => (a[i] = ((i % 17) - 8) / 64));
        else k.arena.u16(w.ptr, rows * cols).forEach((_, i, a) => (a[i] = dtype === 'f16' ? 0x2c00 + (i % 200) : 0x3d00 + (i % 100)));
      } else {
        for (let b = 0; b < (rows * cols) / 32; b++) k.arena.u16(w.ptr + b * 34, 1)[0] = 0x2000;
      }
      const line = [];
      for (const n of [1, prefillN]) {
        const x = k.arena.alloc(n * cols * 4);
        k.arena.f32(x, n * cols).fill(0.5);
        const out = k.arena.alloc(n * rows * 4);
        const s = time(() => k.matmul(out, x, w, n)).seconds;
        line.push(`n=${String(n).padEnd(4)} ${((2 * n * rows * cols) / s / 1e9).toFixed(1).padStart(6)} GFLOP/s`);
        k.arena.free(x);
        k.arena.free(out);
      }
      console.log(`threads=${threads} ${dtype.padEnd(5)} ${rows}x${cols}  ${line.join('   ')}`);
      k.arena.free(w.ptr);
    }
  }
  if (args.includes('--attention')) {
    for (const [visible, dtype] of [[4096, 'f16'], [32768, 'f16'], [32768, 'f32']]) {
      const numHeads = 32, numKvHeads = 4, headDim = 64, n = 1, capacity = visible + 1;
      const eb = dtype === 'f16' ? 2 : 4;
      const kvBytes = numKvHeads * capacity * headDim * eb;
      const keys = k.arena.alloc(kvBytes), values = k.arena.alloc(kvBytes);
      if (dtype === 'f16') { k.arena.u16(keys, kvBytes / 2).fill(0x3000); k.arena.u16(values, kvBytes / 2).fill(0x3000); }
      const q = k.arena.alloc(numHeads * headDim * 4), out = k.arena.alloc(numHeads * headDim * 4);
      const s = time(() => k.attention({ out, q, n, keys, values, dtype, capacity, visible: visible + 1, numHeads, numKvHeads, headDim, scale: 0.125, lastProbs: 0, received: 0 })).seconds;
      const flops = 4 * numHeads * (visible + 1) * headDim;
      console.log(`threads=${threads} attention decode 32/4 heads d=64 ${dtype} T=${visible}: ${(s * 1e3).toFixed(2)} ms  ${(flops / s / 1e9).toFixed(1)} GFLOP/s`);
      for (const p of [keys, values, q, out]) k.arena.free(p);
    }
  }
  await k.close();
}
