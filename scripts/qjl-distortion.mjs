// TurboQuant's MSE and inner-product (QJL) variants on random unit vectors: the numbers in
// docs/methods.md ("QJL"). Needs `npm run build`. Usage: node scripts/qjl-distortion.mjs [n]
import { CODECS, parseSpec } from '../dist/cache/registry.js';
import { withDefaults } from '../dist/cache/spec.js';
import { createKernels } from '../dist/kernels/index.js';
import { ropeOf } from '../dist/kernels/rope.js';
import { seededRandom } from '../dist/util/random.js';

const n = Number(process.argv[2] ?? 2000);
const seeds = 8;
const k = await createKernels({ backend: 'reference' });

/** A uniformly random unit vector (normalised Gaussian). */
function unit(r, d) {
  const x = Float64Array.from({ length: d }, () => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r()));
  const norm = Math.hypot(...x);
  return x.map((v) => v / norm);
}

/**
 * Over `seeds` codecs × n/seeds unit keys x (written at position 0, so RoPE leaves them as they are) and
 * an independent unit query y: ‖x − x̃‖², E[⟨y, x̃⟩ − ⟨y, x⟩]², the bias E⟨x, x̃⟩ − 1 and its standard error.
 */
function measure(spec, d) {
  const config = { architecture: 'llama', hiddenSize: 4 * d, intermediateSize: 8 * d, numLayers: 1, numHeads: 1, numKvHeads: 1, headDim: d, vocabSize: 10, maxContext: 4096, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: true, qkvBias: false };
  let mse = 0, dist = 0, bias = 0, bias2 = 0, count = 0;
  for (let seed = 0; seed < seeds; seed++) {
    const part = parseSpec(spec.includes('qjl') ? spec.replace(')', `,seed=${seed})`) : spec).codec;
    const kind = CODECS.get(part.name);
    const codec = kind.create(withDefaults(part, kind.schema), { kernels: k, config, capacity: 1, rope: ropeOf(config), ropeOnRead: false });
    const r = seededRandom(1000 + seed);
    const ptr = k.arena.alloc(d * 4), vptr = k.arena.alloc(d * 4), pos = k.arena.alloc(4);
    k.arena.i32(pos, 1)[0] = 0;
    for (let t = 0; t < n / seeds; t++) {
      const x = unit(r, d), y = unit(r, d);
      k.arena.f32(ptr, d).set(x);
      k.arena.f32(vptr, d).fill(0);
      codec.write(0, 0, 1, ptr, vptr, pos);
      const xt = codec.readRow(0, 0, 0, 'key');
      let e = 0, iy = 0, ix = 0;
      for (let i = 0; i < d; i++) {
        e += (x[i] - xt[i]) ** 2;
        iy += y[i] * (xt[i] - x[i]);
        ix += x[i] * xt[i];
      }
      mse += e; dist += iy * iy; bias += ix - 1; bias2 += (ix - 1) ** 2; count++;
    }
    for (const p of [ptr, vptr, pos]) k.arena.free(p);
    codec.free();
  }
  const b = bias / count;
  return { mse: mse / count, dist: dist / count, bias: b, se: Math.sqrt((bias2 / count - b * b) / count) };
}

const f = (v) => (Math.abs(v) >= 0.01 ? v.toFixed(4) : v.toExponential(2));
console.log(`${n} random unit vectors per row (${seeds} codecs), reference kernels`);
console.log('| head_dim | bits | spec | ‖x − x̃‖² | E⟨y, x̃ − x⟩² (d ×) | paper bound, prod (d ×) | E⟨x, x̃⟩ − 1 (± s.e.) |');
console.log('|--:|--:|:--|--:|--:|--:|--:|');
for (const d of [64, 128]) {
  for (const bits of [3, 4]) {
    for (const spec of [`turboquant(bits=${bits},nc=false)`, `turboquant(bits=${bits})`, `turboquant(bits=${bits},qjl=true)`]) {
      const m = measure(spec, d);
      const bound = Math.sqrt(3) * Math.PI ** 2 * 4 ** -bits;
      console.log(`| ${d} | ${bits} | \`${spec}\` | ${f(m.mse)} | ${f(m.dist * d)} | ${spec.includes('qjl') ? f(bound) : ''} | ${f(m.bias)} ± ${f(m.se)} |`);
    }
  }
}
