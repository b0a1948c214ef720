/**
 * The normalised Sylvester–Hadamard transform H_n/√n (H_1 = [1], H_2n = [[H_n, H_n], [H_n, −H_n]]),
 * applied block-diagonally along rows: symmetric and orthonormal, so it is its own inverse. The
 * quantized codecs rotate keys, queries, values and outputs with it (QuaRot; llama.cpp's attn_rot).
 */

/** The largest power of two that divides d, at most `max` (llama.cpp: 128 for keys, 64 for values). */
export function hadamardBlock(d: number, max: number): number {
  let n = 1;
  while (n < max && d % (2 * n) === 0) n *= 2;
  return n;
}

/** f64 scratch for one block (sums of f32 numbers near the f32 limit do not overflow there). */
let work = new Float64Array(128);

/** In place: every run of `block` numbers of x (block a power of two dividing x.length) → H_block·run/√block. */
export function hadamardRows(x: Float32Array, block: number): void {
  if (block <= 1) return;
  if ((block & (block - 1)) !== 0 || x.length % block !== 0) throw new RangeError(`internal: Hadamard block ${block} does not tile ${x.length} numbers`);
  if (work.length < block) work = new Float64Array(block);
  const w = work;
  const norm = 1 / Math.sqrt(block);
  for (let off = 0; off < x.length; off += block) {
    for (let i = 0; i < block; i++) w[i] = x[off + i]!;
    // fast Walsh–Hadamard butterflies, log2(block) stages
    for (let h = 1; h < block; h *= 2) {
      for (let i = 0; i < block; i += 2 * h) {
        for (let j = i; j < i + h; j++) {
          const a = w[j]!;
          const b = w[j + h]!;
          w[j] = a + b;
          w[j + h] = a - b;
        }
      }
    }
    for (let i = 0; i < block; i++) x[off + i] = w[i]! * norm;
  }
}
