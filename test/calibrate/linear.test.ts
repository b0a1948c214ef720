// The SIMD products of the backward pass against their scalar definition.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kernelLinear, scalarLinear, type Vec } from '../../src/calibrate/linear.js';
import { createKernels, type Kernels, type Matrix } from '../../src/kernels/index.js';
import { ReferenceKernels } from '../../src/kernels/reference.js';
import { f32ToF16 } from '../../src/kernels/half.js';
import { seededRandom } from '../../src/util/random.js';

const random = seededRandom(3);
const randomVec = (n: number): Float32Array => Float32Array.from({ length: n }, () => random() * 2 - 1);

function expectClose(a: Vec, b: Vec): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!), `element ${i}`).toBeLessThan(1e-4 * (1 + Math.abs(b[i]!)));
}

describe('backward-pass products: SIMD kernels vs scalar definition', () => {
  let k: Kernels;
  beforeAll(async () => {
    k = await createKernels({ threads: 2 });
  });
  afterAll(() => k.close());

  it.each([
    ['f32', 13, 37, 5],
    ['f16', 20, 64, 33],
  ] as const)('%s matrix %i × %i, %i rows of activations', (dtype, rows, cols, n) => {
    const values = randomVec(rows * cols);
    const bytes = dtype === 'f32' ? 4 : 2;
    const ptr = k.arena.alloc(rows * cols * bytes);
    if (dtype === 'f32') k.arena.f32(ptr, values.length).set(values);
    else k.arena.u16(ptr, values.length).set(Array.from(values, f32ToF16));
    const w: Matrix = { ptr, dtype, rows, cols };
    const ref = new ReferenceKernels(k.arena);
    const fast = kernelLinear(k, ref);
    const slow = scalarLinear(ref, (len) => new Float64Array(len));
    const x = randomVec(n * cols);
    const dy = randomVec(n * rows);
    expectClose(fast.forward(w, x, n), slow.forward(w, x, n));
    expectClose(fast.backward(w, dy, n), slow.backward(w, dy, n));
    const b = randomVec(rows * cols);
    expectClose(fast.product(x, b, n, rows, cols), slow.product(x, b, n, rows, cols));
    // Wᵀ a few rows at a time (as for a classifier too large to transpose at once): the same numbers
    for (const rowsOfWt of [4, 8]) expect(kernelLinear(k, ref, rowsOfWt * rows * 4).backward(w, dy, n)).toEqual(fast.backward(w, dy, n));
    k.arena.free(ptr);
  });
});
