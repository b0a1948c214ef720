import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AttentionArgs, Kernels, SlotDType } from '../../src/kernels/api.js';
import { f32ToF16 } from '../../src/kernels/half.js';
import { createKernels } from '../../src/kernels/index.js';
import { Rope } from '../../src/kernels/rope.js';
import type { DType } from '../../src/model/tensor.js';
import { expectClose, put, putMatrix, randomF32, randomMatrixBytes, rng } from './util.js';

const DTYPES: DType[] = ['f32', 'f16', 'bf16', 'q8_0'];

describe.each([1, 2])('wasm kernels, %i thread(s), vs reference', (threads) => {
  let ref: Kernels;
  let wasm: Kernels;
  beforeAll(async () => {
    ref = await createKernels({ backend: 'reference' });
    // exact: q8_0 with f32 activations, held to the reference here (the fast way: test/kernels/ggml/matmul.test.ts)
    wasm = await createKernels({ backend: 'wasm', threads, matmul: 'exact' });
    expect(wasm.backend).toBe('wasm');
    expect(wasm.threads).toBe(threads);
  });
  afterAll(async () => {
    await wasm?.close();
  });

  /** Runs `op` on both kernel sets with the same inputs; returns [wasm, reference] outputs. */
  function both(inputs: ArrayBufferView[], outLen: number, op: (k: Kernels, ptrs: number[], out: number) => void): [Float32Array, Float32Array] {
    const res = [wasm, ref].map((k) => {
      const ptrs = inputs.map((d) => put(k, d));
      const out = k.arena.alloc(outLen * 4);
      k.arena.f32(out, outLen).fill(Number.NaN); // every output must be written
      op(k, ptrs, out);
      const r = k.arena.f32(out, outLen).slice();
      for (const p of [...ptrs, out]) k.arena.free(p);
      return r;
    });
    return [res[0]!, res[1]!];
  }

  describe('matmul', () => {
    // (rows, cols): odd sizes, rows not divisible by the thread count or 4; cols not a multiple of 4/8.
    const shapes: [number, number][] = [[5, 7], [37, 45], [130, 257], [203, 300]];
    const q8Shapes: [number, number][] = [[5, 32], [37, 96], [130, 288], [203, 320]];
    for (const dtype of DTYPES) {
      // 2..16: the few-token path of the float dtypes (batched decode); 17 and 70: the chunked prefill path
      for (const n of [1, 2, 3, 4, 5, 8, 9, 16, 17, 70]) {
        it(`${dtype}, n=${n}`, () => {
          const r = rng(1000 * n + DTYPES.indexOf(dtype));
          for (const [rows, cols] of dtype === 'q8_0' ? q8Shapes : shapes) {
            if (n === 70 && rows < 100) continue;
            const wBytes = randomMatrixBytes(r, dtype, rows, cols);
            const x = randomF32(r, n * cols);
            const [got, want] = both([x], n * rows, (k, [xp], out) => {
              const w = putMatrix(k, wBytes, dtype, rows, cols);
              k.matmul(out, xp!, w, n);
              k.arena.free(w.ptr);
            });
            expectClose(got, want, 1e-5, 2e-6, `${dtype} ${rows}x${cols} n=${n}`);
          }
        });
      }
    }

    it('matmuls: several matrices in one job give what one matmul each gives, and the reference', () => {
      const r = rng(5);
      for (const dtypes of [['f16', 'f16', 'f16'], ['f32', 'f32'], ['q8_0', 'q8_0'], ['f16', 'bf16', 'f16']] as DType[][]) {
        const cols = dtypes.includes('q8_0') ? 96 : 45;
        const rows = [37, 5, 130].slice(0, dtypes.length);
        for (const n of [1, 5]) {
          const mats = dtypes.map((dt, i) => randomMatrixBytes(r, dt, rows[i]!, cols));
          const x = randomF32(r, n * cols);
          const total = rows.reduce((a, b) => a + b, 0) * n;
          const run = (k: Kernels, xp: number, out: number, together: boolean): void => {
            const parts = dtypes.map((dt, i) => ({ out: 0, w: putMatrix(k, mats[i]!, dt, rows[i]!, cols) }));
            parts.forEach((p, i) => (p.out = out + n * 4 * rows.slice(0, i).reduce((a, b) => a + b, 0)));
            if (together) k.matmuls(xp, parts, n);
            else for (const p of parts) k.matmul(p.out, xp, p.w, n);
            for (const p of parts) k.arena.free(p.w.ptr);
          };
          const [got, want] = both([x], total, (k, [xp], out) => run(k, xp!, out, true));
          expectClose(got, want, 1e-5, 2e-6, `${dtypes.join('+')} n=${n}`);
          if (n === 1) {
            const [apart] = both([x], total, (k, [xp], out) => run(k, xp!, out, false));
            expect(got).toEqual(apart);
          }
        }
      }
    });

    it('f32 and f16 at 2-4 tokens and bf16 at 2 (batched decode of a few sessions): each token gets its one-token matvec\'s numbers, bit for bit', () => {
      const r = rng(9);
      const cases = [['f16', 2, 37, 45], ['f16', 3, 130, 257], ['f16', 4, 203, 320], ['bf16', 2, 37, 45], ['bf16', 2, 203, 320], ['f32', 2, 37, 45],
        ['f32', 3, 130, 258], ['f32', 4, 203, 320]];
      for (const [dtype, n, rows, cols] of cases as [DType, number, number, number][]) {
        const w = putMatrix(wasm, randomMatrixBytes(r, dtype, rows, cols), dtype, rows, cols);
        const x = put(wasm, randomF32(r, n * cols));
        const out = wasm.arena.alloc(n * rows * 4);
        const one = wasm.arena.alloc(rows * 4);
        wasm.matmul(out, x, w, n);
        for (let t = 0; t < n; t++) {
          wasm.matmul(one, x + t * cols * 4, w, 1);
          expect(wasm.arena.f32(out + t * rows * 4, rows), `${dtype} ${rows}x${cols} n=${n} token ${t}`).toEqual(wasm.arena.f32(one, rows));
        }
        for (const p of [w.ptr, x, out, one]) wasm.arena.free(p);
      }
    });

    it('is deterministic across repeated calls (no leftover state between jobs)', () => {
      const r = rng(7);
      const rows = 300, cols = 200, n = 6;
      const w = putMatrix(wasm, randomMatrixBytes(r, 'f16', rows, cols), 'f16', rows, cols);
      const x = put(wasm, randomF32(r, n * cols));
      const out = wasm.arena.alloc(n * rows * 4);
      wasm.matmul(out, x, w, n);
      const first = wasm.arena.f32(out, n * rows).slice();
      for (let i = 0; i < 3; i++) {
        wasm.matmul(out, x, w, 1); // a different job in between
        wasm.matmul(out, x, w, n);
        expect(wasm.arena.f32(out, n * rows)).toEqual(first);
      }
    });
  });

  it('rmsnorm', () => {
    const r = rng(11);
    for (const [n, dim] of [[1, 64], [3, 67], [5, 1]]) {
      const x = randomF32(r, n! * dim!, 3);
      const g = randomF32(r, dim!);
      const [got, want] = both([x, g], n! * dim!, (k, [xp, gp], out) => k.rmsnorm(out, xp!, gp!, n!, dim!, 1e-5));
      expectClose(got, want, 1e-6, 1e-7, `rmsnorm n=${n} dim=${dim}`);
    }
  });

  for (const layout of ['half', 'interleaved'] as const) {
    it(`rope (${layout})`, () => {
      const r = rng(layout === 'half' ? 12 : 13);
      for (const [n, heads, headDim, theta] of [[1, 4, 64, 10000], [5, 3, 18, 500000], [7, 2, 128, 1e6]]) {
        const len = n! * heads! * headDim!;
        const x = randomF32(r, len);
        const positions = Int32Array.from({ length: n! }, () => Math.floor(r() * 32768));
        // the same positions twice in a row (q then k) exercises the cos/sin table reuse
        for (let rep = 0; rep < 2; rep++) {
          const [got, want] = both([x, positions], len, (k, [xp, pp], out) => {
            k.rope(xp!, n!, heads!, pp!, new Rope({ headDim: headDim!, ropeTheta: theta!, ropeLayout: layout }));
            k.arena.f32(out, len).set(k.arena.f32(xp!, len));
          });
          expectClose(got, want, 1e-6, 1e-7, `rope ${layout} n=${n} hd=${headDim}`);
        }
      }
    });
  }

  it('softmax', () => {
    const r = rng(14);
    for (const len of [1, 3, 8, 1001]) {
      const x = randomF32(r, len, 30);
      const [got, want] = both([x], len, (k, [xp], out) => {
        k.softmax(xp!, len);
        k.arena.f32(out, len).set(k.arena.f32(xp!, len));
      });
      expectClose(got, want, 1e-6, 1e-7, `softmax len=${len}`);
    }
  });

  it('siluMul, add, addBias', () => {
    const r = rng(15);
    for (const len of [1, 7, 1003]) {
      const g = randomF32(r, len, 20);
      const u = randomF32(r, len, 2);
      const [got, want] = both([g, u], len, (k, [gp, up], out) => k.siluMul(out, gp!, up!, len));
      expectClose(got, want, 2e-6, 1e-7, `siluMul len=${len}`);
      const [got2, want2] = both([g, u], len, (k, [gp, up], out) => {
        k.add(gp!, up!, len);
        k.arena.f32(out, len).set(k.arena.f32(gp!, len));
      });
      expect(got2).toEqual(want2);
    }
    const n = 3, dim = 13;
    const x = randomF32(r, n * dim);
    const b = randomF32(r, dim);
    const [got, want] = both([x, b], n * dim, (k, [xp, bp], out) => {
      k.addBias(xp!, bp!, n, dim);
      k.arena.f32(out, n * dim).set(k.arena.f32(xp!, n * dim));
    });
    expect(got).toEqual(want);
  });

  for (const dtype of DTYPES) {
    it(`embed (${dtype})`, () => {
      const r = rng(16 + DTYPES.indexOf(dtype));
      const rows = 50, cols = dtype === 'q8_0' ? 96 : 37, n = 6;
      const table = randomMatrixBytes(r, dtype, rows, cols);
      const ids = Int32Array.from({ length: n }, () => Math.floor(r() * rows));
      ids[0] = rows - 1;
      const [got, want] = both([ids], n * cols, (k, [ip], out) => {
        const t = putMatrix(k, table, dtype, rows, cols);
        k.embed(out, t, ip!, n);
        k.arena.free(t.ptr);
      });
      expect(got).toEqual(want); // conversion is exact
    });
  }

  for (const layout of ['half', 'interleaved'] as const) {
    for (const dtype of ['f32', 'f16'] as const) {
      it(`ropeRows (${layout}, ${dtype}) rotates stored rows into f32 at given positions exactly as the reference`, () => {
        const r = rng(layout === 'half' ? 14 : 15);
        // positions out of order and repeated; a later call reaching past the table built so far grows it; 300
        // rows are several work items (threads)
        for (const [n, headDim, theta, top] of [[9, 64, 10000, 50], [5, 18, 500000, 3000], [40, 128, 1e6, 100], [3, 64, 10000, 70000], [300, 64, 10000, 5000]]) {
          const rope = new Rope({ headDim: headDim!, ropeTheta: theta!, ropeLayout: layout });
          const f32 = randomF32(r, n! * headDim!, 4);
          const src = dtype === 'f32' ? f32 : Uint16Array.from(f32, f32ToF16);
          const positions = Int32Array.from({ length: n! }, (_, t) => (t === 1 ? 0 : Math.floor(r() * top!)));
          positions[n! - 1] = positions[0]!;
          const [got, want] = [wasm, ref].map((k) => {
            const [sp, pp] = [put(k, src), put(k, positions)];
            const dst = k.arena.alloc(f32.byteLength);
            k.arena.u8(dst, f32.byteLength).fill(0xa5);
            // as two heads when n is even: rows [0, n/2 − 1) and [n/2, n − 1), the rows between left alone
            if (n! % 2 === 0) k.ropeRows(dst, sp, dtype, n! / 2 - 1, 2, n! / 2, pp, rope);
            else k.ropeRows(dst, sp, dtype, n!, 1, n!, pp, rope);
            const bytes = k.arena.u8(dst, f32.byteLength).slice();
            for (const p of [sp, pp, dst]) k.arena.free(p);
            return bytes;
          });
          expect(got, `ropeRows ${layout} ${dtype} n=${n} hd=${headDim}`).toEqual(want);
        }
      });
    }
  }

  it('ropeRows refuses a negative position', () => {
    for (const k of [wasm, ref]) {
      const [sp, pp] = [put(k, new Float32Array(64)), put(k, Int32Array.of(3, -1))];
      expect(() => k.ropeRows(sp, sp, 'f32', 2, 1, 2, pp, new Rope({ headDim: 32, ropeTheta: 10000, ropeLayout: 'half' }))).toThrow(/position -1/);
      k.arena.free(sp);
      k.arena.free(pp);
    }
  });

  it('toF16 is bit-exact round-to-nearest-even', () => {
    const r = rng(20);
    const specials = [
      0, -0, 1, -1, 65504, -65504, 65519.99, 65520, 65536, 1e10, Infinity, -Infinity, NaN, 2 ** -14, 2 ** -24, 2 ** -25,
      2 ** -25 * 1.0000001, 2 ** -24 * 1.5, 2 ** -24 * 2.5, 2 ** -26, 1e-30, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 2 ** -14 - 2 ** -25,
    ];
    const len = 200_003;
    const x = new Float32Array(len);
    const bits = new Uint32Array(x.buffer);
    for (let i = 0; i < len; i++) {
      const m = i % 3;
      if (m === 0) bits[i] = Math.floor(r() * 2 ** 32); // any pattern, NaNs included
      else if (m === 1) x[i] = (r() * 2 - 1) * 2 ** (Math.floor(r() * 44) - 28); // f16 range and around
      else bits[i] = ((0x33000000 + Math.floor(r() * 0x15000000)) & ~0xfff) | (r() < 0.5 ? 0x1000 : 0); // ties
    }
    x.set(specials, 0);
    const results = [wasm, ref].map((k) => {
      const xp = put(k, x);
      const out = k.arena.alloc(len * 2);
      k.toF16(out, xp, len);
      const h = k.arena.u16(out, len).slice();
      k.arena.free(xp);
      k.arena.free(out);
      return h;
    });
    for (let i = 0; i < len; i++) {
      if (results[0]![i] !== results[1]![i]) {
        expect.fail(`toF16(${x[i]}) [bits 0x${bits[i]!.toString(16)}]: got 0x${results[0]![i]!.toString(16)}, want 0x${results[1]![i]!.toString(16)}`);
      }
    }
    expect(results[0]![0]).toBe(f32ToF16(0));
  });

  describe('attention', () => {
    interface Case { numHeads: number; numKvHeads: number; headDim: number; dtype: SlotDType; keyDtype?: 'f32'; n: number; visible: number; probs: boolean; mask?: boolean; qScale?: number }
    const cases: Case[] = [
      { numHeads: 4, numKvHeads: 2, headDim: 16, dtype: 'f32', n: 1, visible: 9, probs: false },
      { numHeads: 4, numKvHeads: 2, headDim: 16, dtype: 'f32', n: 5, visible: 0, probs: true }, // first query sees nothing
      { numHeads: 6, numKvHeads: 2, headDim: 20, dtype: 'f16', n: 3, visible: 37, probs: true }, // group of 3
      { numHeads: 3, numKvHeads: 3, headDim: 12, dtype: 'f16', n: 2, visible: 70, probs: false }, // MHA
      { numHeads: 8, numKvHeads: 1, headDim: 64, dtype: 'f16', n: 1, visible: 700, probs: true }, // MQA, threaded
      { numHeads: 8, numKvHeads: 2, headDim: 64, dtype: 'f32', n: 9, visible: 150, probs: true },
      { numHeads: 14, numKvHeads: 2, headDim: 6, dtype: 'f16', n: 4, visible: 130, probs: false }, // group of 7, d%4 != 0
      { numHeads: 32, numKvHeads: 4, headDim: 64, dtype: 'f16', n: 2, visible: 1000, probs: false },
      // several blocks of queries per head group; the causal edge crosses key blocks inside a query block
      { numHeads: 6, numKvHeads: 2, headDim: 20, dtype: 'f16', n: 37, visible: 50, probs: false },
      { numHeads: 9, numKvHeads: 3, headDim: 64, dtype: 'f16', n: 70, visible: 0, probs: true },
      // masks leave random slots out of each query head's softmax (the newest visible slot stays in)
      { numHeads: 4, numKvHeads: 2, headDim: 16, dtype: 'f32', n: 1, visible: 40, probs: true, mask: true },
      { numHeads: 6, numKvHeads: 2, headDim: 20, dtype: 'f16', n: 3, visible: 300, probs: true, mask: true },
      { numHeads: 4, numKvHeads: 1, headDim: 16, dtype: 'f32', n: 20, visible: 60, probs: true, mask: true },
      // one query with nothing reported per slot: at 2 threads the slots are split into ranges whose
      // partial softmax sums are merged
      { numHeads: 9, numKvHeads: 3, headDim: 64, dtype: 'f16', n: 1, visible: 1000, probs: false },
      { numHeads: 8, numKvHeads: 1, headDim: 64, dtype: 'f32', n: 1, visible: 700, probs: false, mask: true },
      { numHeads: 6, numKvHeads: 2, headDim: 20, dtype: 'f16', n: 1, visible: 3000, probs: false },
      // one query over f16 slots widened in registers: groups of 4 (3 + 1 rows) and 1, an odd slot count,
      // a mask, and queries too large to prescale (the converting path)
      { numHeads: 8, numKvHeads: 2, headDim: 32, dtype: 'f16', n: 1, visible: 301, probs: false },
      { numHeads: 2, numKvHeads: 2, headDim: 16, dtype: 'f16', n: 1, visible: 77, probs: false, mask: true },
      { numHeads: 9, numKvHeads: 3, headDim: 64, dtype: 'f16', n: 1, visible: 45, probs: false, qScale: 1e5 },
      // f32 keys beside f16 values (streaming fp16: keys rotated at read): one query (values widened in
      // registers, split at 2 threads), several, and per-slot probabilities
      { numHeads: 9, numKvHeads: 3, headDim: 64, dtype: 'f16', keyDtype: 'f32', n: 1, visible: 1000, probs: false },
      { numHeads: 6, numKvHeads: 2, headDim: 20, dtype: 'f16', keyDtype: 'f32', n: 37, visible: 50, probs: false },
      { numHeads: 8, numKvHeads: 2, headDim: 32, dtype: 'f16', keyDtype: 'f32', n: 1, visible: 301, probs: true, mask: true },
    ];
    for (const c of cases) {
      it(`${c.numHeads}/${c.numKvHeads} heads, d=${c.headDim}, ${c.keyDtype ? `${c.keyDtype} keys, ` : ''}${c.dtype}, n=${c.n}, visible=${c.visible}${c.probs ? ', probs' : ''}${c.mask ? ', mask' : ''}${c.qScale ? `, |q| up to ${c.qScale}` : ''}`, () => {
        const r = rng(c.numHeads * 100 + c.headDim + c.n);
        const capacity = c.visible + c.n + 3;
        const slotLen = c.numKvHeads * capacity * c.headDim;
        const slots = (dtype: SlotDType): ArrayBufferView => {
          const f = randomF32(r, slotLen, 2);
          return dtype === 'f32' ? f : Uint16Array.from(f, (v) => f32ToF16(v));
        };
        const keys = slots(c.keyDtype ?? c.dtype);
        const values = slots(c.dtype);
        const qLen = c.n * c.numHeads * c.headDim;
        const q = randomF32(r, qLen, c.qScale ?? 1.5);
        const pLen = c.numHeads * capacity;
        const received0 = randomF32(r, pLen);
        const mask = Uint8Array.from({ length: pLen }, (_, i) => (i % capacity < c.visible && r() < 0.6 ? 1 : 0));
        const outs = [wasm, ref].map((k) => {
          const args: AttentionArgs = {
            out: k.arena.alloc(qLen * 4), q: put(k, q), n: c.n, keys: put(k, keys), values: put(k, values),
            dtype: c.dtype, keyDtype: c.keyDtype, capacity, visible: c.visible, numHeads: c.numHeads, numKvHeads: c.numKvHeads,
            headDim: c.headDim, scale: 1 / Math.sqrt(c.headDim),
            lastProbs: c.probs ? k.arena.alloc(pLen * 4) : 0, received: c.probs ? put(k, received0) : 0,
            mask: c.mask ? put(k, mask) : 0,
          };
          if (args.lastProbs) k.arena.f32(args.lastProbs, pLen).fill(123); // must be overwritten, zeros included
          k.attention(args);
          const res = {
            out: k.arena.f32(args.out, qLen).slice(),
            last: args.lastProbs ? k.arena.f32(args.lastProbs, pLen).slice() : undefined,
            received: args.received ? k.arena.f32(args.received, pLen).slice() : undefined,
          };
          for (const p of [args.out, args.q, args.keys, args.values, args.lastProbs, args.received]) if (p) k.arena.free(p);
          return res;
        });
        const [got, want] = outs as [(typeof outs)[0], (typeof outs)[0]];
        expectClose(got.out, want.out, 1e-5, 2e-6, 'out');
        if (c.mask && c.probs) {
          // a masked slot gets no probability from the last query
          const hidden = Array.from(mask.keys()).filter((i) => mask[i] && i % capacity < c.visible);
          expect(hidden.length).toBeGreaterThan(0);
          for (const i of hidden) expect(got.last![i]).toBe(0);
        }
        if (c.probs) {
          expectClose(got.last!, want.last!, 1e-5, 1e-7, 'lastProbs');
          expectClose(got.received!, want.received!, 1e-5, 1e-7, 'received');
        }
      });
    }
  });
});

describe('wasm kernel lifecycle', () => {
  it('alternating small (caller-only) and large (threaded) jobs give the single-thread results', async () => {
    const one = await createKernels({ backend: 'wasm', threads: 1 });
    const two = await createKernels({ backend: 'wasm', threads: 2 });
    const r = rng(5);
    const shapes: [number, number, number][] = [[8, 16, 1], [300, 256, 1], [12, 20, 3], [260, 128, 7]];
    const setups = shapes.map(([rows, cols, n]) => {
      const wb = randomMatrixBytes(r, 'f16', rows, cols);
      const x = randomF32(r, n * cols);
      return [one, two].map((k) => ({ w: putMatrix(k, wb, 'f16', rows, cols), x: put(k, x), out: k.arena.alloc(n * rows * 4), n, len: n * rows }));
    });
    const expected = setups.map(([a]) => {
      one.matmul(a!.out, a!.x, a!.w, a!.n);
      return one.arena.f32(a!.out, a!.len).slice();
    });
    for (let i = 0; i < 400; i++) {
      const j = i % setups.length;
      const b = setups[j]![1]!;
      two.matmul(b.out, b.x, b.w, b.n);
      const got = two.arena.f32(b.out, b.len);
      if (!got.every((v, q) => v === expected[j]![q])) expect.fail(`iteration ${i}: shape ${shapes[j]} differs`);
    }
    await one.close();
    await two.close();
  });

  it('grows the shared memory while workers run, and close() stops the workers', async () => {
    // exact: f32 activations, so the product is the reference's up to f32 rounding
    const k = await createKernels({ backend: 'wasm', threads: 2, matmul: 'exact' });
    const ref = await createKernels({ backend: 'reference' });
    const r = rng(99);
    const big = k.arena.alloc(64 << 20); // forces memory.grow after the workers started
    const rows = 256, cols = 512;
    const wb = randomMatrixBytes(r, 'q8_0', rows, cols);
    const x = randomF32(r, cols * 3);
    const run = (kk: Kernels): Float32Array => {
      const w = putMatrix(kk, wb, 'q8_0', rows, cols);
      const xp = put(kk, x);
      const out = kk.arena.alloc(rows * 3 * 4);
      kk.matmul(out, xp, w, 3);
      return kk.arena.f32(out, rows * 3).slice();
    };
    expectClose(run(k), run(ref), 1e-5, 2e-6, 'after grow');
    k.arena.free(big);
    await k.close();
  });
});

describe('kernel builds (KVPACK_SIMD)', () => {
  const saved = process.env.KVPACK_SIMD;
  afterAll(() => {
    if (saved === undefined) delete process.env.KVPACK_SIMD;
    else process.env.KVPACK_SIMD = saved;
  });

  it('runs the relaxed SIMD build where the engine validates it (Node 20 with the flag set at load), SIMD128 when forced', async () => {
    delete process.env.KVPACK_SIMD;
    const auto = await createKernels({ backend: 'wasm', threads: 2 });
    process.env.KVPACK_SIMD = 'simd128';
    const plain = await createKernels({ backend: 'wasm', threads: 2 });
    process.env.KVPACK_SIMD = 'relaxed';
    const relaxed = await createKernels({ backend: 'wasm', threads: 2 });
    expect([auto.simd, plain.simd, relaxed.simd]).toEqual(['relaxed', 'simd128', 'relaxed']);
    // both builds, the relaxed one on its worker thread too, against the reference (f16 matvec uses FMA in the relaxed build)
    const ref = await createKernels({ backend: 'reference' });
    const r = rng(31);
    const wb = randomMatrixBytes(r, 'f16', 300, 256);
    const x = randomF32(r, 256);
    const run = (k: Kernels): Float32Array => {
      const w = putMatrix(k, wb, 'f16', 300, 256);
      const out = k.arena.alloc(300 * 4);
      k.matmul(out, put(k, x), w, 1);
      return k.arena.f32(out, 300).slice();
    };
    const want = run(ref);
    for (const k of [plain, relaxed]) expectClose(run(k), want, 1e-5, 2e-6, `${k.simd} f16 matvec`);
    for (const k of [auto, plain, relaxed]) await k.close();
  });

  it('refuses a KVPACK_SIMD it does not know, naming it', async () => {
    process.env.KVPACK_SIMD = 'avx512';
    await expect(createKernels({ backend: 'wasm', threads: 1 })).rejects.toThrow(/KVPACK_SIMD must be simd128 or relaxed, got "avx512"/);
  });
});
