/**
 * Bit packing of quantization codes, shared by the codecs (which pack), the scalar reference and the
 * SIMD kernel in assembly/packed-attention.ts (which unpack). A row of `d` codes is stored as ceil(d/64) chunks of
 * 64 codes, each chunk 8·bits bytes, so 2-, 3-, 4- and 8-bit rows are dense (a 64-wide head uses
 * exactly d·bits/8 bytes; other widths pad the last chunk with zero codes). The order inside a chunk is
 * chosen so the kernel unpacks 16 consecutive codes with one mask/shift per vector:
 *
 *  16 bits: u16 c (little-endian) = code c, a bfloat16 read as is (no LUT, scale or zero).
 *   8 bits: byte c = code c.
 *   4 bits: two halves of 16 bytes; byte j of half h holds code 32h+j (low nibble) and 32h+16+j (high).
 *   2 bits: 16 bytes; bits 2k..2k+1 of byte j hold code 16k+j.
 *   3 bits: 24 bytes; the low two bits as the 2-bit layout in bytes [0,16), then a plane of high bits:
 *           bit (2k + (j>>3)) of byte 16 + (j&7) is the high bit of code 16k+j.
 */

export type CodeBits = 2 | 3 | 4 | 8 | 16;

export const CHUNK = 64;

export function rowCodeBytes(d: number, bits: CodeBits): number {
  return Math.ceil(d / CHUNK) * 8 * bits;
}

/** Writes `codes` (d integers in [0, 2^bits)) into `out` (rowCodeBytes bytes, zeroed first). */
export function packRow(codes: ArrayLike<number>, bits: CodeBits, out: Uint8Array): void {
  out.fill(0);
  const cb = 8 * bits;
  for (let c = 0; c < codes.length; c++) {
    const v = codes[c]!;
    const base = Math.floor(c / CHUNK) * cb;
    const i = c % CHUNK;
    switch (bits) {
      case 16:
        out[base + 2 * i] = v & 0xff;
        out[base + 2 * i + 1] = v >>> 8;
        break;
      case 8:
        out[base + i] = v;
        break;
      case 4: {
        const h = i >> 5;
        const j = i & 15;
        const hi = (i >> 4) & 1;
        out[base + 16 * h + j]! |= (v & 15) << (4 * hi);
        break;
      }
      case 2:
        out[base + (i & 15)]! |= (v & 3) << (2 * (i >> 4));
        break;
      case 3: {
        const j = i & 15;
        const k = i >> 4;
        out[base + j]! |= (v & 3) << (2 * k);
        if (v & 4) out[base + 16 + (j & 7)]! |= 1 << (2 * k + (j >> 3));
        break;
      }
    }
  }
}

/** The d codes of a packed row. */
export function unpackRow(src: Uint8Array, bits: CodeBits, d: number): Uint8Array | Uint16Array {
  const out = bits === 16 ? new Uint16Array(d) : new Uint8Array(d);
  const cb = 8 * bits;
  for (let c = 0; c < d; c++) {
    const base = Math.floor(c / CHUNK) * cb;
    const i = c % CHUNK;
    switch (bits) {
      case 8:
        out[c] = src[base + i]!;
        break;
      case 16:
        out[c] = src[base + 2 * i]! | (src[base + 2 * i + 1]! << 8);
        break;
      case 4:
        out[c] = (src[base + 16 * (i >> 5) + (i & 15)]! >> (4 * ((i >> 4) & 1))) & 15;
        break;
      case 2:
        out[c] = (src[base + (i & 15)]! >> (2 * (i >> 4))) & 3;
        break;
      case 3: {
        const j = i & 15;
        const k = i >> 4;
        const lo = (src[base + j]! >> (2 * k)) & 3;
        const hi = (src[base + 16 + (j & 7)]! >> (2 * k + (j >> 3))) & 1;
        out[c] = lo | (hi << 2);
        break;
      }
    }
  }
  return out;
}

/**
 * Writes a lookup table as the kernel reads it: f32 [16] (unused entries repeat the last), then its
 * four byte planes (plane k, byte c = byte k of entry c) for the kernel's swizzle lookups.
 */
export function writeLut(mem: ArrayBuffer | SharedArrayBuffer, ptr: number, lut: ArrayLike<number>): void {
  const f = new Float32Array(mem, ptr, 16);
  for (let c = 0; c < 16; c++) f[c] = lut[Math.min(c, lut.length - 1)]!;
  const bytes = new Uint8Array(mem, ptr, 64);
  const planes = new Uint8Array(mem, ptr + 64, 64);
  for (let k = 0; k < 4; k++) for (let c = 0; c < 16; c++) planes[16 * k + c] = bytes[4 * c + k]!;
}

/** Bytes a LUT occupies in kernel memory (writeLut). */
export const LUT_BYTES = 128;
