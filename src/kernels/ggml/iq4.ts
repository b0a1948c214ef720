import { half, nibbleBlock, type GgmlFormat } from './format.js';

/** The 16 non-uniform levels IQ4 codes index (ggml's kvalues_iq4nl), denser near zero like trained weights. */
export const IQ4_LEVELS = Int8Array.of(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

const fr = Math.fround;

/** IQ4_NL: d, 16 bytes of 4-bit level indices (low nibble value j, high nibble value j + 16); 18 bytes per 32. */
export const IQ4_NL: GgmlFormat = {
  name: 'IQ4_NL', id: 20, blockValues: 32, blockBytes: 18,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at);
    nibbleBlock(b, at + 2, 0, out, o, (code) => d * IQ4_LEVELS[code]!);
  },
};

/**
 * IQ4_XS: d, u16 of high scale bits, 4 bytes of low scale nibbles, 128 bytes of level indices (136 bytes
 * per 256). Sub-block i (32 values) has the 6-bit scale ls = low nibble i | high 2 bits i, value = d·(ls - 32)·level.
 */
export const IQ4_XS: GgmlFormat = {
  name: 'IQ4_XS', id: 23, blockValues: 256, blockBytes: 136,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at);
    const scalesHigh = b[at + 2]! | (b[at + 3]! << 8);
    for (let i = 0; i < 8; i++) {
      const ls = ((b[at + 4 + (i >> 1)]! >> (4 * (i & 1))) & 15) | (((scalesHigh >> (2 * i)) & 3) << 4);
      const dl = fr(d * (ls - 32));
      nibbleBlock(b, at + 8 + 16 * i, 0, out, o, (code) => dl * IQ4_LEVELS[code]!);
      o += 32;
    }
  },
};
