import { describe, expect, it } from 'vitest';
import { kernelPair, put, rng } from './util.js';

describe.each([1, 2])('streaming read (xorWords), wasm (%i threads) vs reference', (threads) => {
  const kernels = kernelPair(threads);

  it('gives the XOR of the words for sizes within one chunk, across chunks and with a partial last chunk', () => {
    const r = rng(threads);
    for (const bytes of [0, 64, 4096, (1 << 20) + 64 * 3, 3 * (1 << 20)]) {
      const data = Uint8Array.from({ length: bytes }, () => Math.floor(r() * 256));
      const at = (k: typeof kernels.ref) => k.xorWords(put(k, data), bytes);
      const want = at(kernels.ref);
      expect(at(kernels.wasm)).toBe(want);
      if (bytes >= 64) {
        // the read covers every byte: flipping the last one changes the answer
        data[bytes - 1] ^= 1;
        expect(at(kernels.wasm)).not.toBe(want);
      }
    }
  });

  it('refuses a size that is not a multiple of 64', () => {
    expect(() => kernels.wasm.xorWords(0, 100)).toThrow(/multiple of 64/);
    expect(() => kernels.ref.xorWords(0, 100)).toThrow(/multiple of 64/);
  });
});
