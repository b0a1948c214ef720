import type { Kernels } from '../../src/kernels/api.js';
import { f32ToF16 } from '../../src/kernels/half.js';
import { LUT_BYTES, rowCodeBytes, writeLut, type CodeBits } from '../../src/kernels/packed/pack.js';
import { toBf16 } from '../../src/kernels/packed/quantize.js';
import type { QuantStream } from '../../src/kernels/packed/types.js';
import { put, randomF32 } from './util.js';

/** A packed stream's shape for the quantized attention tests. */
export interface StreamSpec {
  bits: CodeBits;
  axis: 'token' | 'channel';
  group: number;
  ocap: number;
  ringSize: number;
  qlen: number;
  sinks: number;
  rope: boolean;
}

/** Random packed bytes for a stream; placed identically into each kernel set by `place`. */
export function randomStream(r: () => number, s: StreamSpec, numKv: number, cap: number, d: number, extreme: boolean, integer = false, distinct = false) {
  const rb = rowCodeBytes(d, s.bits);
  const codes = new Uint8Array(numKv * cap * rb).map(() => Math.floor(r() * 256));
  if (s.bits === 16) new Uint16Array(codes.buffer).set(toBf16(randomF32(r, codes.length / 2, 4))); // finite bfloat16s
  const groups = s.axis === 'token' ? Math.ceil(d / s.group) : 0;
  const phs = s.axis === 'token' ? cap * groups * 4 : (s.group > 0 ? Math.ceil(cap / s.group) : 1) * d * 4;
  const params = new Uint32Array((numKv * phs) / 4);
  for (let i = 0; i < params.length; i++) {
    const scale = r() < 0.05 ? 0 : extreme ? r() * 60000 : r() * 0.5; // zero ranges and huge ones
    const zero = extreme ? (r() * 2 - 1) * 65000 : (r() * 2 - 1) * 2;
    params[i] = (f32ToF16(scale) | (f32ToF16(zero) << 16)) >>> 0;
  }
  const outliers = new Uint32Array(numKv * cap * Math.max(1, s.ocap));
  for (let i = 0; i < outliers.length; i++) {
    let ch = r() < 0.3 ? 0xffff : Math.floor(r() * d);
    // distinct: no channel twice in a slot's entries (as the codecs write them)
    if (distinct && s.ocap > 0) for (let e = i - (i % s.ocap); e < i; e++) if (outliers[e]! >>> 16 === ch) ch = 0xffff;
    outliers[i] = (f32ToF16((r() * 2 - 1) * (extreme ? 65000 : 30)) | (ch << 16)) >>> 0;
  }
  const f16s = (len: number) => Uint16Array.from(randomF32(r, len, extreme ? 60000 : 3), f32ToF16);
  const ring = f16s(numKv * Math.max(1, s.ringSize) * d);
  const sinkRows = f16s(numKv * Math.max(1, s.sinks) * d);
  const lut = Array.from({ length: 16 }, () => r() * 2 - 1).sort((a, b) => a - b);
  if (s.bits !== 8 && (integer || r() < 0.5)) for (let c = 0; c < 16; c++) lut[c] = c; // plain integer codes
  return (k: Kernels): QuantStream => {
    const lutPtr = k.arena.alloc(LUT_BYTES);
    writeLut(k.arena.memory.buffer, lutPtr, lut);
    return {
      codes: put(k, codes), bits: s.bits, lut: lutPtr, axis: s.axis, group: s.group, params: put(k, params), paramsHeadStride: phs,
      outliers: put(k, outliers), ocap: s.ocap, ring: put(k, ring), ringSize: s.ringSize, qlen: s.qlen,
      sinkRows: put(k, sinkRows), sinks: s.sinks, rope: s.rope,
    };
  };
}

/** A case of the quantized attention tests: shapes, the two streams, and how positions are laid out. */
export interface AttentionCase {
  name: string;
  d: number;
  numHeads: number;
  numKv: number;
  n: number;
  visible: number;
  keys: StreamSpec;
  values: StreamSpec;
  interleaved?: boolean;
  /** Plain integer codes (L[c] = c), as the int codec writes them. */
  integer?: boolean;
  /** Positions equal to slots (as without eviction) instead of random ones past the first few. */
  ordered?: boolean;
}

export const tok = (bits: CodeBits, group: number, extra: Partial<StreamSpec> = {}): StreamSpec => ({
  bits, axis: 'token', group, ocap: 0, ringSize: 0, qlen: 1 << 30, sinks: 0, rope: false, ...extra,
});
export const chan = (bits: CodeBits, group: number, extra: Partial<StreamSpec> = {}): StreamSpec => ({ ...tok(bits, group, extra), axis: 'channel' });
