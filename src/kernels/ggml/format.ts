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
