import { half, nibbleBlock, type GgmlFormat } from './format.js';

/**
 * ggml's "legacy" 32-value block formats. Each block starts with an f16 scale d (and an f16 offset m for
 * the _1 kinds). 4-bit codes pack two values per byte: byte j holds value j in its low nibble and value
 * j + 16 in its high nibble. The _5 kinds add a u32 whose bit j is the fifth bit of value j.
 * Arithmetic mirrors ggml's float order (products rounded to f32), so values match its dequantizer exactly.
 */

const fr = Math.fround;

/** Q4_0: d, 16 bytes of 4-bit codes; value = (code - 8)·d. 18 bytes per 32 values. */
export const Q4_0: GgmlFormat = {
  name: 'Q4_0', id: 2, blockValues: 32, blockBytes: 18,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at);
    nibbleBlock(b, at + 2, 0, out, o, (code) => (code - 8) * d);
  },
};

/** Q4_1: d, m, 16 bytes of 4-bit codes; value = code·d + m. 20 bytes per 32 values. */
export const Q4_1: GgmlFormat = {
  name: 'Q4_1', id: 3, blockValues: 32, blockBytes: 20,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at);
    const m = half(b, at + 2);
    nibbleBlock(b, at + 4, 0, out, o, (code) => fr(code * d) + m);
  },
};

const u32 = (b: Uint8Array, at: number): number => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

/** Q5_0: d, u32 of fifth bits, 16 bytes of low nibbles; value = (code - 16)·d. 22 bytes per 32 values. */
export const Q5_0: GgmlFormat = {
  name: 'Q5_0', id: 6, blockValues: 32, blockBytes: 22,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at);
    nibbleBlock(b, at + 6, u32(b, at + 2), out, o, (code) => (code - 16) * d);
  },
};

/** Q5_1: d, m, u32 of fifth bits, 16 bytes of low nibbles; value = code·d + m. 24 bytes per 32 values. */
export const Q5_1: GgmlFormat = {
  name: 'Q5_1', id: 7, blockValues: 32, blockBytes: 24,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at);
    const m = half(b, at + 2);
    nibbleBlock(b, at + 8, u32(b, at + 4), out, o, (code) => fr(code * d) + m);
  },
};

/** Q8_0: d, 32 int8 codes; value = code·d. 34 bytes per 32 values. */
export const Q8_0: GgmlFormat = {
  name: 'Q8_0', id: 8, blockValues: 32, blockBytes: 34,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at);
    for (let j = 0; j < 32; j++) out[o + j] = ((b[at + 2 + j]! << 24) >> 24) * d;
  },
};
