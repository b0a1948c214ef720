import {
  STREAM_AXIS, STREAM_BITS, STREAM_CODES, STREAM_GROUP, STREAM_LUT, STREAM_OCAP, STREAM_OUTLIERS, STREAM_PARAMS,
  STREAM_PARAMS_HEAD_STRIDE, STREAM_QLEN, STREAM_RING, STREAM_RING_SIZE, STREAM_ROPE, STREAM_ROW_BYTES, STREAM_SINK_ROWS,
  STREAM_SINKS,
} from './abi.js';
import type { QuantStream } from './packed/types.js';

/**
 * Writes the fields of an argument block in kernel memory by their abi.ts byte offsets. The views are
 * made once: the memory is shared, so growing it never detaches them, and blocks lie below the size it
 * had when they were allocated. Pointers go through `ptr` only (see the memory-index note in abi.ts).
 */
export class ArgBlock {
  private readonly i32: Int32Array;
  private readonly f32: Float32Array;

  constructor(memory: WebAssembly.Memory, base: number, bytes: number) {
    this.i32 = new Int32Array(memory.buffer, base, bytes >> 2);
    this.f32 = new Float32Array(memory.buffer, base, bytes >> 2);
  }

  /** A byte offset into the kernel memory (0: none). */
  ptr(field: number, p: number): void {
    this.i32[field >> 2] = p;
  }

  int(field: number, v: number): void {
    this.i32[field >> 2] = v;
  }

  float(field: number, v: number): void {
    this.f32[field >> 2] = v;
  }
}

/** Writes a stream descriptor (abi.ts STREAM_*) as the kernel reads it. */
export function writeStreamDesc(b: ArgBlock, s: QuantStream, rowBytes: number): void {
  b.ptr(STREAM_CODES, s.codes);
  b.int(STREAM_BITS, s.bits);
  b.ptr(STREAM_LUT, s.lut);
  b.int(STREAM_AXIS, s.axis === 'channel' ? 1 : 0);
  b.int(STREAM_GROUP, s.group);
  b.ptr(STREAM_PARAMS, s.params);
  b.int(STREAM_PARAMS_HEAD_STRIDE, s.paramsHeadStride);
  b.ptr(STREAM_OUTLIERS, s.outliers);
  b.int(STREAM_OCAP, s.ocap);
  b.ptr(STREAM_RING, s.ring);
  b.int(STREAM_RING_SIZE, Math.max(1, s.ringSize));
  b.int(STREAM_QLEN, s.qlen);
  b.ptr(STREAM_SINK_ROWS, s.sinkRows);
  b.int(STREAM_SINKS, s.sinks);
  b.int(STREAM_ROPE, s.rope ? 1 : 0);
  b.int(STREAM_ROW_BYTES, rowBytes);
}
