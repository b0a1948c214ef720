import { f16Table } from '../half.js';

/**
 * A GGML block format: `blockValues` consecutive values of a row stored in `blockBytes` bytes.
 * `dequantizeBlock` is the scalar definition every faster kernel for the format is tested against.
 */
export interface GgmlFormat {
  /** ggml's name, e.g. `Q4_K`. */
  readonly name: string;
  /** ggml's type id (the number in a GGUF tensor info). */
  readonly id: number;
  readonly blockValues: number;
  readonly blockBytes: number;
  /** Writes the block at `b[at..]` as `blockValues` floats at `out[o..]`. */
  dequantizeBlock(b: Uint8Array, at: number, out: Float32Array, o: number): void;
}

const f16 = f16Table();
/** The little-endian f16 at `b[at]`, as a number. */
export const half = (b: Uint8Array, at: number): number => f16[b[at]! | (b[at + 1]! << 8)]!;

/**
 * A block's 32 values from 16 bytes of 4-bit codes at `b[codes..]` (byte j: value j in its low nibble,
 * value j + 16 in its high nibble), each code widened by bit j of `fifthBits` (the _5 kinds; 0 for
 * none) and turned into a number by `value`.
 */
export function nibbleBlock(b: Uint8Array, codes: number, fifthBits: number, out: Float32Array, o: number, value: (code: number) => number): void {
  for (let j = 0; j < 16; j++) {
    const q = b[codes + j]!;
    out[o + j] = value((q & 15) | (((fifthBits >>> j) & 1) << 4));
    out[o + j + 16] = value((q >> 4) | (((fifthBits >>> (j + 16)) & 1) << 4));
  }
}
