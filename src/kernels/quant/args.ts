import type { QuantStream } from './types.js';

/** Byte size of one stream descriptor (the D_* offsets in assembly/quant.ts). */
export const STREAM_DESC_BYTES = 64;
/** Slots per decoded tile in the kernel (QB in assembly/quant.ts). */
export const QUANT_TILE = 32;
/** First job op handled by assembly/quant.ts `qrun` (the worker dispatches on it). */
export const OP_QUANT_ATTENTION = 16;

/** Writes a stream descriptor as the kernel reads it. */
export function writeStreamDesc(i32: Int32Array, word: number, s: QuantStream, rowBytes: number): void {
  i32.set([
    s.codes, s.bits, s.lut, s.axis === 'channel' ? 1 : 0, s.group, s.params, s.paramsHeadStride,
    s.outliers, s.ocap, s.ring, Math.max(1, s.ringSize), s.qlen, s.sinkRows, s.sinks, s.rope ? 1 : 0, rowBytes,
  ], word);
}
