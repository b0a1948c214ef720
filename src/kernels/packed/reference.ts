import type { Arena } from '../arena.js';
import { bf16ToF32, f16Table } from '../half.js';
import { rowCodeBytes, unpackRow } from './pack.js';
import type { QuantAttentionArgs, QuantStream } from './types.js';

/**
 * Scalar definition of the packed kernels in assembly/packed-attention.ts: how one stored row decodes (codes →
 * LUT → scale and zero → outliers → sinks / residual ring → RoPE), and attention over such rows. Every
 * f32 operation of the decode is rounded where the kernel rounds, so decoded rows match bit for bit;
 * the attention accumulates in f64 like ReferenceKernels.attention.
 */

const fr = Math.fround;
const u32 = (arena: Arena, ptr: number, len: number): Uint32Array => new Uint32Array(arena.memory.buffer, ptr, len);

/** cos and sin of p·θ_j for j < half, composed from the lo/hi tables exactly as the kernel does. */
export function ropeAngles(arena: Arena, lo: number, hi: number, half: number, p: number): { cos: Float32Array; sin: Float32Array } {
  const l = arena.f32(lo + (p & 63) * 2 * half * 4, 2 * half);
  const h = arena.f32(hi + (p >> 6) * 2 * half * 4, 2 * half);
  const cos = new Float32Array(half);
  const sin = new Float32Array(half);
  for (let j = 0; j < half; j++) {
    const cl = l[j]!, sl = l[half + j]!, ch = h[j]!, sh = h[half + j]!;
    cos[j] = fr(fr(cl * ch) - fr(sl * sh));
    sin[j] = fr(fr(sl * ch) + fr(cl * sh));
  }
  return { cos, sin };
}

/** Row `slot` of KV head `head` as the kernel sees it. */
export function decodeRow(
  arena: Arena, st: QuantStream, a: Pick<QuantAttentionArgs, 'capacity' | 'headDim' | 'positions' | 'ropeLo' | 'ropeHi' | 'ropeInterleaved'>,
  head: number, slot: number, position?: number,
): Float32Array {
  const { capacity: cap, headDim: d } = a;
  const t16 = f16Table();
  const out = new Float32Array(d);
  const pos = position ?? arena.i32(a.positions + (head * cap + slot) * 4, 1)[0]!;
  if (slot >= st.qlen) {
    const src = arena.u16(st.ring + ((head * st.ringSize + (slot % st.ringSize)) * d) * 2, d);
    for (let i = 0; i < d; i++) out[i] = t16[src[i]!]!;
  } else {
    const rb = rowCodeBytes(d, st.bits);
    const codes = unpackRow(arena.u8(st.codes + (head * cap + slot) * rb, rb), st.bits, d);
    const lut = arena.f32(st.lut, 16);
    const u = (c: number): number => (st.bits === 8 ? c : lut[c]!);
    if (st.bits === 16) {
      for (let i = 0; i < d; i++) out[i] = bf16ToF32(codes[i]!);
    } else if (st.axis === 'token') {
      const groups = Math.ceil(d / st.group);
      const p = u32(arena, st.params + head * st.paramsHeadStride + slot * groups * 4, groups);
      for (let i = 0; i < d; i++) {
        const w = p[Math.floor(i / st.group)]!;
        out[i] = fr(fr(u(codes[i]!) * t16[w & 0xffff]!) + t16[w >>> 16]!);
      }
    } else {
      const g = st.group > 0 ? Math.floor(slot / st.group) : 0;
      const p = u32(arena, st.params + head * st.paramsHeadStride + g * d * 4, d);
      for (let i = 0; i < d; i++) out[i] = fr(fr(u(codes[i]!) * t16[p[i]! & 0xffff]!) + t16[p[i]! >>> 16]!);
    }
    if (st.ocap > 0) {
      const o = u32(arena, st.outliers + (head * cap + slot) * st.ocap * 4, st.ocap);
      for (const w of o) if (w >>> 16 !== 0xffff && w >>> 16 < d) out[w >>> 16] = t16[w & 0xffff]!;
    }
    if (st.sinks > 0 && pos >= 0 && pos < st.sinks) {
      const src = arena.u16(st.sinkRows + (head * st.sinks + pos) * d * 2, d);
      for (let i = 0; i < d; i++) out[i] = t16[src[i]!]!;
    }
  }
  if (st.rope) {
    const half = d >> 1;
    const { cos, sin } = ropeAngles(arena, a.ropeLo, a.ropeHi, half, pos);
    for (let j = 0; j < half; j++) {
      const ia = a.ropeInterleaved ? 2 * j : j;
      const ib = a.ropeInterleaved ? 2 * j + 1 : j + half;
      const x = out[ia]!, y = out[ib]!;
      out[ia] = fr(fr(x * cos[j]!) - fr(y * sin[j]!));
      out[ib] = fr(fr(x * sin[j]!) + fr(y * cos[j]!));
    }
  }
  return out;
}

/** Causal GQA attention over packed keys and values (the definition the kernel is tested against). */
export function quantAttentionReference(arena: Arena, a: QuantAttentionArgs): void {
  const { n, numHeads, numKvHeads, headDim: d, capacity } = a;
  const group = numHeads / numKvHeads;
  const q = arena.f32(a.q, n * numHeads * d);
  const out = arena.f32(a.out, n * numHeads * d);
  const last = a.lastProbs ? arena.f32(a.lastProbs, numHeads * capacity) : undefined;
  const received = a.received ? arena.f32(a.received, numHeads * capacity) : undefined;
  const mask = a.mask ? arena.u8(a.mask, numHeads * capacity) : undefined;
  const seenMax = a.visible + n - 1;
  for (let kvh = 0; kvh < numKvHeads; kvh++) {
    const keys: Float32Array[] = [];
    const values: Float32Array[] = [];
    for (let s = 0; s < seenMax; s++) {
      keys.push(decodeRow(arena, a.keys, a, kvh, s));
      values.push(decodeRow(arena, a.values, a, kvh, s));
    }
    const p = new Float64Array(seenMax);
    for (let t = 0; t < n; t++) {
      const seen = a.visible + t;
      for (let h = kvh * group; h < (kvh + 1) * group; h++) {
        const qo = (t * numHeads + h) * d;
        let max = -Infinity;
        for (let s = 0; s < seen; s++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[qo + i]! * keys[s]![i]!;
          p[s] = mask?.[h * capacity + s] ? -Infinity : dot * a.scale;
          max = Math.max(max, p[s]!);
        }
        let sum = 0;
        for (let s = 0; s < seen; s++) sum += p[s] = Math.exp(p[s]! - max);
        const acc = new Float64Array(d);
        for (let s = 0; s < seen; s++) {
          const w = p[s]! / sum;
          for (let i = 0; i < d; i++) acc[i] = acc[i]! + w * values[s]![i]!;
          if (received) received[h * capacity + s] = received[h * capacity + s]! + w;
          if (last && t === n - 1) last[h * capacity + s] = w;
        }
        out.set(acc, qo);
        if (last && t === n - 1) for (let s = seen; s < capacity; s++) last[h * capacity + s] = 0;
      }
    }
  }
}
