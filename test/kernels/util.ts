import { afterAll, beforeAll, expect } from 'vitest';
import type { Kernels, Matrix } from '../../src/kernels/api.js';
import { f32ToF16 } from '../../src/kernels/half.js';
import { createKernels } from '../../src/kernels/index.js';
import type { DType } from '../../src/model/tensor.js';

/** Deterministic PRNG so failures reproduce. */
import { seededRandom as rng } from '../../src/util/random.js';

export { rng };

export function randomF32(r: () => number, len: number, scale = 1): Float32Array {
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** Stored bytes of a random rows × cols matrix in `dtype`. */
export function randomMatrixBytes(r: () => number, dtype: DType, rows: number, cols: number): Uint8Array {
  switch (dtype) {
    case 'f32':
      return new Uint8Array(randomF32(r, rows * cols).buffer);
    case 'f16': {
      const h = new Uint16Array(rows * cols);
      for (let i = 0; i < h.length; i++) h[i] = f32ToF16((r() * 2 - 1) * (r() < 0.01 ? 1e-5 : 1)); // some subnormals
      return new Uint8Array(h.buffer);
    }
    case 'bf16': {
      const f = randomF32(r, rows * cols);
      const u = new Uint32Array(f.buffer);
      const h = new Uint16Array(rows * cols);
      for (let i = 0; i < h.length; i++) h[i] = u[i]! >>> 16;
      return new Uint8Array(h.buffer);
    }
    case 'q8_0': {
      const blocks = (rows * cols) / 32;
      const out = new Uint8Array(blocks * 34);
      const dv = new DataView(out.buffer);
      for (let b = 0; b < blocks; b++) {
        dv.setUint16(b * 34, f32ToF16(r() * 0.02 + 0.001), true);
        for (let i = 0; i < 32; i++) dv.setInt8(b * 34 + 2 + i, Math.floor(r() * 256) - 128);
      }
      return out;
    }
  }
}

/** Copies bytes into a fresh allocation of the kernel set's arena. */
export function put(k: Kernels, data: ArrayBufferView): number {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const p = k.arena.alloc(bytes.length);
  k.arena.u8(p, bytes.length).set(bytes);
  return p;
}

export function putMatrix(k: Kernels, bytes: Uint8Array, dtype: DType, rows: number, cols: number): Matrix {
  return { ptr: put(k, bytes), dtype, rows, cols };
}

/** |a - e| ≤ rel·|e| + abs·max|e| element-wise, with the first offending index in the message. */
export function expectClose(actual: Float32Array, expected: Float32Array, rel: number, abs: number, what: string): void {
  expect(actual.length).toBe(expected.length);
  let scale = 0;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < expected.length; i++) {
    const e = expected[i]!;
    const a = actual[i]!;
    const tol = rel * Math.abs(e) + abs * scale;
    if (!(Math.abs(a - e) <= tol) && !(Number.isNaN(a) && Number.isNaN(e))) {
      expect.fail(`${what}: index ${i}: got ${a}, want ${e} (tol ${tol.toExponential(2)}, scale ${scale})`);
    }
  }
}

/**
 * The scalar reference kernels and the wasm kernels with `threads` threads, made before a describe
 * block's tests run (read the fields inside tests) and closed after.
 */
export function kernelPair(threads: number): { ref: Kernels; wasm: Kernels } {
  const pair = {} as { ref: Kernels; wasm: Kernels };
  beforeAll(async () => {
    pair.ref = await createKernels({ backend: 'reference' });
    pair.wasm = await createKernels({ backend: 'wasm', threads });
  });
  afterAll(async () => {
    await pair.wasm?.close();
  });
  return pair;
}
