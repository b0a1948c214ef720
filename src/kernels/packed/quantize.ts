import type { Arena } from '../arena.js';
import { f16ToF32, f32ToF16 } from '../half.js';
import { packRow, rowCodeBytes } from './pack.js';
import type { QuantizeArgs, QuantKind } from './types.js';

/**
 * Scalar definition of the quantize kernel (assembly/quantize.ts), which must match it byte for byte:
 * how a row of f32 numbers becomes packed codes and (token axis) its groups' f16 scale/zero words.
 */

const F16_MAX = 65504;

/** NaN as 0, clamped to the f16 range. */
export const clampF16 = (x: number): number => (Number.isNaN(x) ? 0 : Math.max(-F16_MAX, Math.min(F16_MAX, x)));

/** Scale and zero for the range [lo, hi], rounded to f16 as stored (finite whatever the input). */
export function rangeParams(kind: QuantKind, bits: number, lo: number, hi: number): { s: number; z: number; word: number } {
  lo = clampF16(lo);
  hi = clampF16(Math.max(lo, hi));
  const k = 2 ** bits - 1;
  const sh = f32ToF16(Math.min(F16_MAX, kind === 'int' ? (hi - lo) / k : (hi - lo) / 2));
  const zh = f32ToF16(clampF16(kind === 'int' ? lo : (hi + lo) / 2));
  return { s: f16ToF32(sh), z: f16ToF32(zh), word: (sh | (zh << 16)) >>> 0 };
}

/** Index of the level nearest to y (mids: the decision thresholds between sorted levels); NaN goes to the middle. */
export function nearest(mids: ArrayLike<number>, y: number): number {
  if (Number.isNaN(y)) return mids.length >> 1;
  let lo = 0;
  let hi = mids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (y > mids[mid]!) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Code of x under scale s and zero z (clamped into range; a zero scale gives the code of the zero). */
export function encodeValue(kind: QuantKind, bits: number, mids: ArrayLike<number>, x: number, s: number, z: number): number {
  if (!(s > 0)) return kind === 'int' ? 0 : nearest(mids, 0);
  const y = (x - z) / s;
  if (kind === 'int') {
    const k = 2 ** bits - 1;
    return Number.isNaN(y) ? 0 : Math.max(0, Math.min(k, Math.round(y)));
  }
  return nearest(mids, y);
}

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);

/** f32 → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function toBf16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    f[0] = x[i]!;
    const b = u[0]!;
    out[i] = Number.isNaN(x[i]!) ? (b >>> 16) | 0x40 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

export function quantizeReference(arena: Arena, a: QuantizeArgs): void {
  const st = a.stream;
  const d = a.headDim;
  const mids = a.midsLength > 0 ? new Float64Array(arena.memory.buffer, a.mids, a.midsLength) : new Float64Array(0);
  const codes = new Uint8Array(d); // (bits ≤ 8; bfloat16 rows are packed as they are)
  const rb = rowCodeBytes(d, st.bits);
  for (let t = 0; t < a.n; t++) {
    for (let j = 0; j < a.heads; j++) {
      const h = a.head0 + j;
      const slot = a.from + t;
      const x = arena.f32(a.src + (t * a.heads + j) * d * 4, d);
      if (st.bits === 16) {
        packRow(toBf16(x), 16, arena.u8(st.codes + (h * a.capacity + slot) * rb, rb));
        continue;
      }
      if (st.axis === 'token') {
        const groups = Math.ceil(d / st.group);
        const words = new Uint32Array(arena.memory.buffer, st.params + h * st.paramsHeadStride + slot * groups * 4, groups);
        for (let g = 0; g < groups; g++) {
          const end = Math.min(d, (g + 1) * st.group);
          let lo = Infinity;
          let hi = -Infinity;
          for (let i = g * st.group; i < end; i++) {
            lo = Math.min(lo, x[i]!);
            hi = Math.max(hi, x[i]!);
          }
          const p = rangeParams(a.kind, st.bits, lo, hi);
          words[g] = p.word;
          for (let i = g * st.group; i < end; i++) codes[i] = encodeValue(a.kind, st.bits, mids, x[i]!, p.s, p.z);
        }
      } else {
        const tg = st.group > 0 ? Math.floor(slot / st.group) : 0;
        const words = new Uint32Array(arena.memory.buffer, st.params + h * st.paramsHeadStride + tg * d * 4, d);
        for (let i = 0; i < d; i++) {
          const w = words[i]!;
          codes[i] = encodeValue(a.kind, st.bits, mids, x[i]!, f16ToF32(w & 0xffff), f16ToF32(w >>> 16));
        }
      }
      packRow(codes, st.bits, arena.u8(st.codes + (h * a.capacity + slot) * rb, rb));
    }
  }
}
