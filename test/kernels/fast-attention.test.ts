import { describe, expect, it } from 'vitest';
import type { Kernels } from '../../src/kernels/api.js';
import { QATT_TILE } from '../../src/kernels/abi.js';
import { f16Table } from '../../src/kernels/half.js';
import { rowCodeBytes, unpackRow } from '../../src/kernels/packed/pack.js';
import { decodeRow } from '../../src/kernels/packed/reference.js';
import type { QuantAttentionArgs, QuantStream } from '../../src/kernels/packed/types.js';
import { Rope } from '../../src/kernels/rope.js';
import { RopeTables } from '../../src/cache/quant/rope.js';
import { chan, randomStream, tok, type AttentionCase } from './streams.js';
import { expectClose, kernelPair, put, randomF32, rng } from './util.js';

/**
 * The fast path of packed attention (`fast: true`, assembly/packed-attention.ts), against a scalar
 * definition of its rounded computation written here from the description alone, and against the
 * exact path within the error that rounding allows.
 */

const fr = Math.fround;
/** f32 round to nearest, ties to even (f32x4.nearest / nearest). */
function nearestEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

/** Integer levels of a stream's LUT: u = code for plain integer codes, else L rounded to 8 bits over its range. */
function levelsOf(k: Kernels, st: QuantStream): { u: number[]; a: number; b: number } {
  const n = st.bits >= 8 ? 0 : 1 << st.bits;
  const lut = k.arena.f32(st.lut, 16);
  const L = Array.from({ length: n }, (_, c) => lut[c]!);
  if (L.every((l, c) => l === c)) return { u: Array.from({ length: 256 }, (_, c) => c), a: 1, b: 0 };
  const lo = Math.min(...L);
  const hi = Math.max(...L);
  const a = hi > lo ? fr((hi - lo) / 255) : 0;
  return { u: L.map((l) => (a > 0 ? nearestEven(fr(fr(l - lo) / a)) : 0)), a, b: lo };
}

interface Streams {
  k: Kernels;
  a: QuantAttentionArgs;
  /** Slots any query sees: tiles are [32i, min(32i + 32, slots)). */
  slots: number;
}

function slotPosition(s: Streams, kvh: number, slot: number): number {
  return s.k.arena.i32(s.a.positions + (kvh * s.a.capacity + slot) * 4, 1)[0]!;
}

/** Whether the tile of `slot` is all quantized (below qlen) and holds no sink row: the fast path takes it. */
function fastTile(s: Streams, st: QuantStream, kvh: number, slot: number): boolean {
  const t0 = slot - (slot % QATT_TILE);
  const t1 = Math.min(t0 + QATT_TILE, s.slots);
  if (t1 > st.qlen) return false;
  for (let r = t0; r < t1; r++) {
    const p = slotPosition(s, kvh, r);
    if (p >= 0 && p < st.sinks) return false;
  }
  return true;
}

function codesOf(s: Streams, st: QuantStream, kvh: number, slot: number): ArrayLike<number> {
  const rb = rowCodeBytes(s.a.headDim, st.bits);
  return unpackRow(s.k.arena.u8(st.codes + (kvh * s.a.capacity + slot) * rb, rb), st.bits, s.a.headDim);
}

/** f16 scale and zero of channel i of a slot. */
function scaleZero(s: Streams, st: QuantStream, kvh: number, slot: number, i: number): [number, number] {
  const t16 = f16Table();
  const d = s.a.headDim;
  let w: number;
  if (st.axis === 'token') {
    const groups = Math.ceil(d / st.group);
    w = new Uint32Array(s.k.arena.memory.buffer, st.params + kvh * st.paramsHeadStride + (slot * groups + Math.floor(i / st.group)) * 4, 1)[0]!;
  } else {
    const g = st.group > 0 ? Math.floor(slot / st.group) : 0;
    w = new Uint32Array(s.k.arena.memory.buffer, st.params + kvh * st.paramsHeadStride + (g * d + i) * 4, 1)[0]!;
  }
  return [t16[w & 0xffff]!, t16[w >>> 16]!];
}

/** Outlier entries (channel, f16 value) of a slot, unused ones left out. */
function outliersOf(s: Streams, st: QuantStream, kvh: number, slot: number): [number, number][] {
  if (st.ocap === 0) return [];
  const t16 = f16Table();
  const words = new Uint32Array(s.k.arena.memory.buffer, st.outliers + (kvh * s.a.capacity + slot) * st.ocap * 4, st.ocap);
  return Array.from(words).filter((w) => w >>> 16 < s.a.headDim).map((w) => [w >>> 16, t16[w & 0xffff]!]);
}

/** Keys on the integer path of plain integer codes per token (the exact path's own, one query digit). */
function tokenKeys(st: QuantStream, d: number, isInt: boolean): boolean {
  return isInt && st.bits !== 16 && st.axis === 'token' && st.ocap === 0 && st.sinks === 0 && !st.rope && d % 16 === 0 && d <= 256 &&
    (st.group >= d || st.group % 16 === 0);
}

/**
 * Scalar definition of the fast path: scores and outputs of query t, head h, in f64 except where the
 * kernel rounds (the query to 16 bits per head, levels to 8 bits, weights to 16 bits per tile).
 */
function fastReference(s: Streams, t: number, h: number): Float64Array {
  const { a } = s;
  const d = a.headDim;
  const kvh = Math.floor(h / (a.numHeads / a.numKvHeads));
  const seen = a.visible + t;
  const q = s.k.arena.f32(a.q + (t * a.numHeads + h) * d * 4, d);
  const lvK = levelsOf(s.k, a.keys);
  const lvV = levelsOf(s.k, a.values);
  const intKeys = tokenKeys(a.keys, d, lvK.a === 1 && lvK.b === 0);
  const chanKeys = !intKeys && !a.keys.rope && a.keys.axis === 'channel' && a.keys.bits !== 16 && d % 8 === 0 && d <= 256;
  const fastValues = a.values.bits !== 16 && a.values.axis === 'token' && a.values.group >= d && d % 8 === 0 && d <= 256;
  const m = Math.max(...Array.from(q, Math.abs));
  const scores = new Float64Array(seen);
  for (let slot = 0; slot < seen; slot++) {
    if (intKeys && fastTile(s, a.keys, kvh, slot)) {
      // one digit: q_c ≈ round(q_c·top/m)·m/top (8 bits for codes of ≤ 4 bits, else 16), then S·Σ q·code + Z·Σ q per group
      const codes = codesOf(s, a.keys, kvh, slot);
      const g = Math.min(d, a.keys.group);
      const top = a.keys.bits <= 4 ? 127 : 32767;
      let score = 0;
      for (let c0 = 0; c0 < d; c0 += g) {
        let dot = 0;
        let sum = 0;
        for (let c = c0; c < c0 + g; c++) {
          dot += nearestEven(q[c]! * fr(top / m)) * codes[c]!;
          sum += q[c]!;
        }
        const [S, Z] = scaleZero(s, a.keys, kvh, slot, c0);
        score += S * a.scale * (m / top) * dot + Z * a.scale * sum;
      }
      scores[slot] = score;
    } else if (chanKeys && fastTile(s, a.keys, kvh, slot)) {
      // w_c = scale·q_c·a·S_c rounded to 16 bits; the zeros' part in f32; outliers by their difference
      const codes = codesOf(s, a.keys, kvh, slot);
      const w = Array.from(q, (x, c) => a.scale * x * lvK.a * scaleZero(s, a.keys, kvh, slot, c)[0]);
      const wm = Math.max(...w.map(Math.abs));
      let dot = 0;
      let C = 0;
      for (let c = 0; c < d; c++) {
        const [S, Z] = scaleZero(s, a.keys, kvh, slot, c);
        dot += (wm > 0 ? nearestEven(w[c]! * (32767 / wm)) : 0) * lvK.u[codes[c]!]!;
        C += a.scale * q[c]! * (lvK.b * S + Z);
      }
      let score = (wm / 32767) * dot + C;
      for (const [c, v] of outliersOf(s, a.keys, kvh, slot)) {
        const [S, Z] = scaleZero(s, a.keys, kvh, slot, c);
        score += a.scale * q[c]! * (v - ((lvK.a * lvK.u[codes[c]!]! + lvK.b) * S + Z));
      }
      scores[slot] = score;
    } else {
      // exact decode (keys before RoPE too: the fast path only regroups the rotation)
      const key = decodeRow(s.k.arena, a.keys, a, kvh, slot);
      let dot = 0;
      for (let c = 0; c < d; c++) dot += q[c]! * key[c]!;
      scores[slot] = dot * a.scale;
    }
  }
  const max = Math.max(...scores);
  let total = 0;
  const p = scores.map((x) => Math.exp(x - max));
  for (const x of p) total += x;
  const acc = new Float64Array(d);
  for (let t0 = 0; t0 < seen; t0 += QATT_TILE) {
    const t1 = Math.min(t0 + QATT_TILE, seen);
    if (!(fastValues && fastTile(s, a.values, kvh, t0))) {
      for (let slot = t0; slot < t1; slot++) {
        const v = decodeRow(s.k.arena, a.values, a, kvh, slot);
        for (let c = 0; c < d; c++) acc[c] += p[slot]! * v[c]!;
      }
      continue;
    }
    // weights p·a·S rounded to 16 bits of the tile's largest (8 bits for plain integer codes of ≤ 4 bits
    // without outliers, d a multiple of 16); zeros b·S + Z summed apart
    const top = lvV.a === 1 && lvV.b === 0 && a.values.bits <= 4 && a.values.ocap === 0 && d % 16 === 0 ? 127 : 32767;
    const rows = [];
    for (let slot = t0; slot < t1; slot++) {
      const [S, Z] = scaleZero(s, a.values, kvh, slot, 0);
      rows.push({ slot, aS: lvV.a * S, z: lvV.b * S + Z, codes: codesOf(s, a.values, kvh, slot) });
    }
    const wmax = Math.max(...rows.map((r) => Math.abs(p[r.slot]! * r.aS)));
    for (const r of rows) {
      const W = wmax > 0 ? nearestEven(p[r.slot]! * r.aS * (top / wmax)) : 0;
      for (let c = 0; c < d; c++) acc[c] += (wmax / top) * W * lvV.u[r.codes[c]!]! + p[r.slot]! * r.z;
      for (const [c, v] of outliersOf(s, a.values, kvh, r.slot)) acc[c] += p[r.slot]! * (v - (r.aS * lvV.u[r.codes[c]!]! + r.z));
    }
  }
  return acc.map((x) => x / total);
}

interface Case extends AttentionCase {
  /** Largest RMS error of the fast path against the exact one, relative to the output's RMS. */
  tolerance: number;
}

// Tolerances: plain integer codes differ from the exact path by the query's 16-bit rounding and the
// weights' (2^-16 of a tile's largest), 8-bit ones for codes of ≤ 4 bits (1/254 of the largest: ~0.5%
// of the output); LUT codes also by their levels rounded to 1/255 of the LUT's range.
const cases: Case[] = [
  { name: 'int4 per token (int codec): 8-bit queries and weights', d: 64, numHeads: 9, numKv: 3, n: 1, visible: 700, keys: tok(4, 64), values: tok(4, 64), integer: true, tolerance: 1e-2 },
  { name: 'int8 keys in groups of 16 (16-bit queries), int2 values (8-bit weights), several queries', d: 64, numHeads: 4, numKv: 2, n: 3, visible: 77, keys: tok(8, 16), values: tok(2, 128), integer: true,
    tolerance: 2e-3 },
  { name: 'int4, 45 slots (the last tile 13: a partial group of four keys, an odd pair of values)', d: 64, numHeads: 4, numKv: 2, n: 1, visible: 45,
    keys: tok(4, 64), values: tok(4, 64), integer: true, tolerance: 1e-2 },
  { name: 'int4 with head_dim 48: a 64-code chunk part used, 16-channel key tails', d: 48, numHeads: 6, numKv: 2, n: 1, visible: 100,
    keys: tok(4, 64), values: tok(4, 64), integer: true, tolerance: 1e-2 },
  { name: 'int2 keys in groups of 16 (16-channel tails), int8 values, 33 slots (a partial tile)', d: 48, numHeads: 4, numKv: 2, n: 1, visible: 33, keys: tok(2, 16), values: tok(8, 48), integer: true,
    tolerance: 1e-2 },
  {
    name: 'kvquant, keys after RoPE (prerope=false): channel scales folded into the query, LUT levels, outliers, a sink',
    d: 64, numHeads: 6, numKv: 2, n: 1, visible: 300, ordered: true,
    keys: chan(3, 0, { ocap: 2, sinks: 1 }), values: tok(3, 64, { ocap: 1, sinks: 1 }), tolerance: 3e-3,
  },
  {
    name: 'kvquant, keys before RoPE (half layout): queries turned back per tile, values on integers',
    d: 64, numHeads: 9, numKv: 3, n: 2, visible: 400, ordered: true,
    keys: chan(2, 0, { ocap: 1, sinks: 1, rope: true }), values: tok(2, 64, { ocap: 1, sinks: 1 }), tolerance: 3e-3,
  },
  {
    name: 'kvquant 4-bit, interleaved RoPE, random positions (tiles with mixed p >> 6 decode exactly)',
    d: 64, numHeads: 4, numKv: 2, n: 1, visible: 200, interleaved: true,
    keys: chan(4, 0, { ocap: 1, rope: true }), values: tok(4, 64, { ocap: 1 }), tolerance: 3e-3,
  },
  {
    name: 'KIVI: channel keys in groups of 32 (queries redone per group), residual ring from slot 96',
    d: 64, numHeads: 4, numKv: 2, n: 2, visible: 130, ordered: true,
    keys: chan(2, 32, { ringSize: 40, qlen: 96 }), values: tok(2, 64, { ringSize: 40, qlen: 96 }), integer: true, tolerance: 1e-3,
  },
  {
    name: 'head_dim 8 (stories260K): 8-channel tails', d: 8, numHeads: 8, numKv: 4, n: 1, visible: 90, ordered: true,
    keys: chan(3, 0, { ocap: 1, sinks: 1, rope: true }), values: tok(3, 64, { ocap: 1, sinks: 1 }), tolerance: 3e-3,
  },
];

describe.each([1, 2])('packed attention, fast path (wasm, %i threads)', (threads) => {
  const kernels = kernelPair(threads);

  for (const c of cases) {
    it(c.name, () => {
      const k = kernels.wasm;
      const r = rng(c.d * 17 + c.visible + threads);
      const cap = c.visible + c.n + 7;
      const keys = randomStream(r, c.keys, c.numKv, cap, c.d, false, c.integer === true, true)(k);
      const values = randomStream(r, c.values, c.numKv, cap, c.d, false, c.integer === true, true)(k);
      const positions = new Int32Array(c.numKv * cap).map((_, i) => (c.ordered === true || i % cap < 6 ? i % cap : Math.floor(r() * 9000)));
      const q = randomF32(r, c.n * c.numHeads * c.d, 2);
      const rope = new RopeTables(k, new Rope({ headDim: c.d, ropeTheta: 10000, ropeLayout: c.interleaved === true ? 'interleaved' : 'half' }));
      rope.ensure(9000);
      const a: QuantAttentionArgs = {
        out: k.arena.alloc(q.length * 4), q: put(k, q), n: c.n, visible: c.visible, capacity: cap, numHeads: c.numHeads, numKvHeads: c.numKv,
        headDim: c.d, scale: 1 / Math.sqrt(c.d), lastProbs: 0, received: 0, positions: put(k, positions),
        keys, values, ropeLo: rope.lo, ropeHi: rope.hi, ropeInterleaved: c.interleaved === true,
      };
      const run = (fast: boolean): Float32Array => {
        k.arena.f32(a.out, q.length).fill(Number.NaN);
        k.quantAttention({ ...a, fast });
        return k.arena.f32(a.out, q.length).slice();
      };
      const exact = run(false);
      const fast = run(true);
      const s: Streams = { k, a, slots: c.visible + c.n - 1 };
      const want = new Float32Array(q.length);
      for (let t = 0; t < c.n; t++) for (let h = 0; h < c.numHeads; h++) want.set(fastReference(s, t, h), (t * c.numHeads + h) * c.d);
      // the kernel's own rounding: a product at a tie may round the other way in f32 (one unit of 2^-15)
      expectClose(fast, want, 2e-4, 1e-4, `${c.name}: fast vs its scalar definition`);
      let err = 0;
      let norm = 0;
      for (let i = 0; i < exact.length; i++) {
        err += (fast[i]! - exact[i]!) ** 2;
        norm += exact[i]! ** 2;
      }
      const rel = Math.sqrt(err / norm);
      expect(rel).toBeLessThan(c.tolerance);
      // it is another computation, not the exact one by another route
      expect(rel).toBeGreaterThan(0);
    });
  }
});
