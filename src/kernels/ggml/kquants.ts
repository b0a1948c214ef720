import { half, type GgmlFormat } from './format.js';

/**
 * ggml's K-quants: super-blocks of 256 values in sub-blocks of 16 or 32, each sub-block with its own
 * small integer scale (and min) that multiplies the super-block's f16 scale d (and dmin).
 * Arithmetic mirrors ggml's float order (sub-block scale rounded to f32, then times the code), so the
 * values match its dequantizer exactly.
 */

const fr = Math.fround;

/** Q2_K: 16 scale/min nibble pairs, 64 bytes of 2-bit codes, d, dmin (84 bytes). value = d·sc·q - dmin·m. */
export const Q2_K: GgmlFormat = {
  name: 'Q2_K', id: 10, blockValues: 256, blockBytes: 84,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at + 80);
    const dmin = half(b, at + 82);
    let is = 0;
    for (let half128 = 0; half128 < 2; half128++) {
      const q = at + 16 + half128 * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const sc = b[at + is++]!;
          const dl = fr(d * (sc & 15));
          const ml = fr(dmin * (sc >> 4));
          for (let l = 0; l < 16; l++) out[o++] = fr(dl * ((b[q + part * 16 + l]! >> shift) & 3)) - ml;
        }
      }
    }
  },
};

/** Q3_K: 32 bytes of high bits, 64 bytes of 2-bit low codes, 12 bytes of 6-bit scales, d (110 bytes). */
export const Q3_K: GgmlFormat = {
  name: 'Q3_K', id: 11, blockValues: 256, blockBytes: 110,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at + 108);
    const hm = at;
    const sc = at + 96;
    let is = 0;
    let mask = 1;
    for (let half128 = 0; half128 < 2; half128++) {
      const q = at + 32 + half128 * 32;
      for (let shift = 0; shift < 8; shift += 2) {
        for (let part = 0; part < 2; part++) {
          const dl = d * (scale3(b, sc, is++) - 32);
          for (let l = 0; l < 16; l++) {
            const i = part * 16 + l;
            const code = ((b[q + i]! >> shift) & 3) - (b[hm + i]! & mask ? 0 : 4);
            out[o++] = fr(dl) * code;
          }
        }
        mask <<= 1;
      }
    }
  },
};

/** Sub-block j's 6-bit scale of Q3_K: low 4 bits from byte j % 8 (nibble j / 8), high 2 bits from byte 8 + j % 4. */
function scale3(b: Uint8Array, sc: number, j: number): number {
  const low = (b[sc + (j & 7)]! >> (4 * (j >> 3))) & 15;
  const high = (b[sc + 8 + (j & 3)]! >> (2 * (j >> 2))) & 3;
  return low | (high << 4);
}

/**
 * Sub-block j's 6-bit scale and min shared by Q4_K and Q5_K (12 bytes for 8 pairs): j < 4 keep them in
 * the low 6 bits of bytes j and j + 4; j ≥ 4 split them between byte j + 4's nibbles and the top 2 bits
 * of bytes j - 4 and j.
 */
function scaleMin4(b: Uint8Array, s: number, j: number): [number, number] {
  if (j < 4) return [b[s + j]! & 63, b[s + j + 4]! & 63];
  return [(b[s + j + 4]! & 15) | ((b[s + j - 4]! >> 6) << 4), (b[s + j + 4]! >> 4) | ((b[s + j]! >> 6) << 4)];
}

/** Q4_K: d, dmin, 12 bytes of scales/mins, 128 bytes of 4-bit codes (144 bytes). value = d·sc·q - dmin·m. */
export const Q4_K: GgmlFormat = {
  name: 'Q4_K', id: 12, blockValues: 256, blockBytes: 144,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at);
    const dmin = half(b, at + 2);
    for (let j = 0; j < 4; j++) {
      const q = at + 16 + j * 32;
      const [sc1, m1] = scaleMin4(b, at + 4, 2 * j);
      const [sc2, m2] = scaleMin4(b, at + 4, 2 * j + 1);
      const d1 = fr(d * sc1), min1 = fr(dmin * m1), d2 = fr(d * sc2), min2 = fr(dmin * m2);
      for (let l = 0; l < 32; l++) out[o + l] = fr(d1 * (b[q + l]! & 15)) - min1;
      for (let l = 0; l < 32; l++) out[o + 32 + l] = fr(d2 * (b[q + l]! >> 4)) - min2;
      o += 64;
    }
  },
};

/** Q5_K: d, dmin, 12 bytes of scales/mins, 32 bytes of fifth bits, 128 bytes of low nibbles (176 bytes). */
export const Q5_K: GgmlFormat = {
  name: 'Q5_K', id: 13, blockValues: 256, blockBytes: 176,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at);
    const dmin = half(b, at + 2);
    const qh = at + 16;
    for (let j = 0; j < 4; j++) {
      const q = at + 48 + j * 32;
      const [sc1, m1] = scaleMin4(b, at + 4, 2 * j);
      const [sc2, m2] = scaleMin4(b, at + 4, 2 * j + 1);
      const d1 = fr(d * sc1), min1 = fr(dmin * m1), d2 = fr(d * sc2), min2 = fr(dmin * m2);
      const lowBit = 1 << (2 * j), highBit = 2 << (2 * j);
      for (let l = 0; l < 32; l++) out[o + l] = fr(d1 * ((b[q + l]! & 15) + (b[qh + l]! & lowBit ? 16 : 0))) - min1;
      for (let l = 0; l < 32; l++) out[o + 32 + l] = fr(d2 * ((b[q + l]! >> 4) + (b[qh + l]! & highBit ? 16 : 0))) - min2;
      o += 64;
    }
  },
};

/** Q6_K: 128 bytes of low nibbles, 64 bytes of high 2-bit pairs, 16 int8 scales, d (210 bytes). value = d·sc·(q - 32). */
export const Q6_K: GgmlFormat = {
  name: 'Q6_K', id: 14, blockValues: 256, blockBytes: 210,
  dequantizeBlock(b, at, out, o) {
    const d = half(b, at + 208);
    for (let half128 = 0; half128 < 2; half128++) {
      const ql = at + half128 * 64;
      const qh = at + 128 + half128 * 32;
      const sc = at + 192 + half128 * 8;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = b[qh + l]!;
        const codes = [
          (b[ql + l]! & 15) | ((h & 3) << 4),
          (b[ql + l + 32]! & 15) | (((h >> 2) & 3) << 4),
          (b[ql + l]! >> 4) | (((h >> 4) & 3) << 4),
          (b[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4),
        ];
        for (let k = 0; k < 4; k++) out[o + l + 32 * k] = fr(d * ((b[sc + is + 2 * k]! << 24) >> 24)) * (codes[k]! - 32);
      }
      o += 128;
    }
  },
};
