import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Kernels, Matrix } from '../../../src/kernels/api.js';
import { BLOCK_FORMATS, dequantize, type BlockDType } from '../../../src/kernels/ggml/index.js';
import { f32ToF16 } from '../../../src/kernels/half.js';
import { createKernels } from '../../../src/kernels/index.js';
import { INT_DOT_MAX_TOKENS } from '../../../src/kernels/scratch.js';
import { expectClose, put, putMatrix, randomF32, rng } from '../util.js';

/** Byte offsets of each format's f16 scales in a block (the rest of a block is codes and small integer scales). */
const HALF_FIELDS: Record<BlockDType, number[]> = {
  q4_0: [0], q4_1: [0, 2], q5_0: [0], q5_1: [0, 2], q8_0: [0], q2_k: [80, 82], q3_k: [108], q4_k: [0, 2], q5_k: [0, 2],
  q6_k: [208], iq4_nl: [0], iq4_xs: [0],
};
const DTYPES = Object.keys(BLOCK_FORMATS) as BlockDType[];

/** Random blocks: any bit pattern is a valid block once its f16 scales are finite and modest. */
function randomBlocks(r: () => number, dtype: BlockDType, rows: number, cols: number): Uint8Array {
  const f = BLOCK_FORMATS[dtype];
  const blocks = (rows * cols) / f.blockValues;
  const out = Uint8Array.from({ length: blocks * f.blockBytes }, () => Math.floor(r() * 256));
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    for (const at of HALF_FIELDS[dtype]) view.setUint16(b * f.blockBytes + at, f32ToF16((r() - 0.3) * 0.01), true);
  }
  return out;
}

/**
 * 8-bit activations move each x_i by at most half a step, max|x| over its span (a block: 32 or 256
 * values) / 254, so a dot product moves by at most Σ|w_i|·step_i/2 (plus f32 rounding).
 */
function expectWithinActivationRounding(got: Float32Array, want: Float32Array, w: Float32Array, x: Float32Array, span: number, what: string): void {
  const cols = x.length;
  for (let r = 0; r < got.length; r++) {
    let bound = 0;
    for (let b = 0; b < cols; b += span) {
      let amax = 0;
      for (let i = b; i < b + span; i++) amax = Math.max(amax, Math.abs(x[i]!));
      for (let i = b; i < b + span; i++) bound += (Math.abs(w[r * cols + i]!) * amax) / 254;
    }
    expect(Math.abs(got[r]! - want[r]!), `${what} row ${r}`).toBeLessThanOrEqual(bound * 1.001 + 1e-6);
  }
}

/**
 * The activations as the fast matvec rounds them, llama.cpp's quantize_row_q8_0 / q8_K: per `span`
 * values (32, or 256 for the K-quants) d = max|x| / 127 and codes round(x / d) (ties to even, in f32
 * as the kernel computes; llama.cpp's roundf differs only on exact ties); returns codes · d.
 */
function roundActivations(x: Float32Array, span: number): Float64Array {
  const out = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += span) {
    let amax = 0;
    for (let i = b; i < b + span; i++) amax = Math.max(amax, Math.abs(x[i]!));
    const d = Math.fround(amax / 127);
    const inv = d > 0 ? Math.fround(1 / d) : 0;
    for (let i = b; i < b + span; i++) {
      const v = Math.fround(x[i]! * inv);
      const r = Math.round(v);
      out[i] = (r - v === 0.5 && r % 2 !== 0 ? r - 1 : r) * d; // ties to even
    }
  }
  return out;
}

describe.each([1, 2])('GGML block matmul and embed, %i thread(s), vs the scalar reference', (threads) => {
  let ref: Kernels;
  let f32dot: Kernels;
  let int8dot: Kernels;
  beforeAll(async () => {
    ref = await createKernels({ backend: 'reference' });
    f32dot = await createKernels({ backend: 'wasm', threads, matmul: 'exact' });
    int8dot = await createKernels({ backend: 'wasm', threads, matmul: 'fast' });
  });
  afterAll(async () => {
    await f32dot.close();
    await int8dot.close();
  });

  /** Puts a block matrix and an input into k's memory, runs `op` into `length` fresh floats, and frees all three. */
  function withMatrix(
    k: Kernels, bytes: Uint8Array, dtype: BlockDType, rows: number, cols: number, input: Float32Array | Int32Array, length: number,
    op: (out: number, w: Matrix, input: number) => void,
  ): Float32Array {
    const w = putMatrix(k, bytes, dtype, rows, cols);
    const ip = put(k, input);
    const out = k.arena.alloc(length * 4);
    op(out, w, ip);
    const got = k.arena.f32(out, length).slice();
    for (const p of [w.ptr, ip, out]) k.arena.free(p);
    return got;
  }

  function run(k: Kernels, wBytes: Uint8Array, dtype: BlockDType, rows: number, cols: number, x: Float32Array, n: number): Float32Array {
    return withMatrix(k, wBytes, dtype, rows, cols, x, n * rows, (out, w, xp) => k.matmul(out, xp, w, n));
  }

  /**
   * The fast way's products of n tokens: each token's within the activations' rounding of the
   * reference, and equal (up to f32 rounding) to the dequantized weights · its rounded activations.
   */
  function expectRoundedDots(int8: Float32Array, want: Float32Array, wBytes: Uint8Array, dtype: BlockDType, rows: number, cols: number, x: Float32Array, n: number, what: string): void {
    const bv = BLOCK_FORMATS[dtype].blockValues;
    const w = dequantize(BLOCK_FORMATS[dtype], wBytes, rows, cols);
    for (let t = 0; t < n; t++) {
      const xt = x.subarray(t * cols, (t + 1) * cols);
      const got = int8.subarray(t * rows, (t + 1) * rows);
      expectWithinActivationRounding(got, want.subarray(t * rows, (t + 1) * rows), w, xt, bv, `${what} token ${t}`);
      const xr = roundActivations(xt, bv);
      for (let r = 0; r < rows; r++) {
        let sum = 0, abs = 0;
        for (let i = 0; i < cols; i++) {
          sum += w[r * cols + i]! * xr[i]!;
          abs += Math.abs(w[r * cols + i]! * xr[i]!);
        }
        expect(Math.abs(got[r]! - sum), `${what} token ${t} row ${r} vs rounded activations`).toBeLessThanOrEqual(1e-5 * abs + 1e-7);
      }
    }
  }

  for (const dtype of DTYPES) {
    const bv = BLOCK_FORMATS[dtype].blockValues;
    const shapes: [number, number][] = [[5, bv], [37, 2 * bv], [130, 3 * bv]];
    for (const n of [1, 3, 9, 64]) {
      it(`${dtype}, n=${n}`, () => {
        const r = rng(100 * n + DTYPES.indexOf(dtype));
        for (const [rows, cols] of shapes) {
          const wBytes = randomBlocks(r, dtype, rows, cols);
          const x = randomF32(r, n * cols);
          const want = run(ref, wBytes, dtype, rows, cols, x, n);
          expectClose(run(f32dot, wBytes, dtype, rows, cols, x, n), want, 1e-5, 2e-6, `${dtype} ${rows}x${cols} n=${n} f32`);
          const fast = run(int8dot, wBytes, dtype, rows, cols, x, n);
          // prefill chunks past INT_DOT_MAX_TOKENS take the f32 tiles either way
          if (n > INT_DOT_MAX_TOKENS) expectClose(fast, want, 1e-5, 2e-6, `${dtype} ${rows}x${cols} n=${n} fast`);
          else expectRoundedDots(fast, want, wBytes, dtype, rows, cols, x, n, `${dtype} ${rows}x${cols} n=${n} int8`);
        }
      });
    }
    it(`${dtype}: the fast way's several tokens get each its one-token matvec's numbers`, () => {
      const r = rng(31 + DTYPES.indexOf(dtype));
      // odd row counts, rows of 1 to 9 blocks, and two parts in one call: each part's last rows end a work item
      for (const [n, rows, cols] of [[2, 37, 2 * bv], [3, 5, bv], [5, 67, 9 * bv], [INT_DOT_MAX_TOKENS, 21, 2 * bv]] as const) {
        const wBytes = randomBlocks(r, dtype, rows, cols);
        const x = randomF32(r, n * cols);
        const all = run(int8dot, wBytes, dtype, rows, cols, x, n);
        for (let t = 0; t < n; t++) {
          const one = run(int8dot, wBytes, dtype, rows, cols, x.subarray(t * cols, (t + 1) * cols), 1);
          expect(all.subarray(t * rows, (t + 1) * rows), `${dtype} ${rows}x${cols} n=${n} token ${t}`).toEqual(one);
        }
        if (n === 5) expectRoundedDots(all, run(ref, wBytes, dtype, rows, cols, x, n), wBytes, dtype, rows, cols, x, n, `${dtype} ${rows}x${cols} n=${n}`);
        // the same rows as two parts of 3 and rows - 3
        const k = int8dot;
        const wp = putMatrix(k, wBytes, dtype, rows, cols);
        const split = (3 * cols / BLOCK_FORMATS[dtype].blockValues) * BLOCK_FORMATS[dtype].blockBytes;
        const xp = put(k, x);
        const out0 = k.arena.alloc(n * 3 * 4), out1 = k.arena.alloc(n * (rows - 3) * 4);
        k.matmuls(xp, [{ out: out0, w: { ...wp, rows: 3 } }, { out: out1, w: { ...wp, ptr: wp.ptr + split, rows: rows - 3 } }], n);
        const parts = [k.arena.f32(out0, n * 3).slice(), k.arena.f32(out1, n * (rows - 3)).slice()];
        for (const p of [wp.ptr, xp, out0, out1]) k.arena.free(p);
        for (let t = 0; t < n; t++) {
          const want = all.subarray(t * rows, (t + 1) * rows);
          expect(parts[0]!.subarray(t * 3, (t + 1) * 3), `${dtype} part 0 token ${t}`).toEqual(want.subarray(0, 3));
          expect(parts[1]!.subarray(t * (rows - 3), (t + 1) * (rows - 3)), `${dtype} part 1 token ${t}`).toEqual(want.subarray(3));
        }
      }
    });
    it(`embed (${dtype}) is exact`, () => {
      const r = rng(7 + DTYPES.indexOf(dtype));
      const rows = 20, cols = 2 * bv, n = 5;
      const table = randomBlocks(r, dtype, rows, cols);
      const ids = Int32Array.from({ length: n }, (_, i) => (i * 7) % rows);
      const both = [ref, f32dot].map((k) => withMatrix(k, table, dtype, rows, cols, ids, n * cols, (out, t, ip) => k.embed(out, t, ip, n)));
      expectClose(both[1]!, both[0]!, 1e-6, 0, `${dtype} embed`);
    });
  }

  it('refuses a matmul mode it does not know, naming it', async () => {
    await expect(createKernels({ backend: 'wasm', threads, matmul: 'int4' as 'fast' })).rejects.toThrow(/matmul must be fast or exact, got "int4"/);
  });

  it('refuses rows that are not whole blocks', () => {
    const w = { ptr: 0, dtype: 'q4_k' as const, rows: 2, cols: 100 };
    expect(() => f32dot.matmul(0, 0, w, 1)).toThrow(/not a multiple of 256/);
  });
});
