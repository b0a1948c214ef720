import { describe, expect, it } from 'vitest';
import type { Kernels } from '../../src/kernels/api.js';
import { f16ToF32, f32ToF16 } from '../../src/kernels/half.js';
import { Rope } from '../../src/kernels/rope.js';
import { CHUNK, packRow, rowCodeBytes, unpackRow, type CodeBits } from '../../src/kernels/packed/pack.js';
import { decodeRow } from '../../src/kernels/packed/reference.js';
import type { QuantAttentionArgs, QuantKind, QuantStream } from '../../src/kernels/packed/types.js';
import { normalFloat } from '../../src/cache/quant/lut.js';
import { toBf16 } from '../../src/kernels/packed/quantize.js';
import { RopeTables } from '../../src/cache/quant/rope.js';
import { expectClose, kernelPair, put, randomF32, rng } from './util.js';
import { chan, randomStream, tok, type AttentionCase, type StreamSpec } from './streams.js';

describe('code packing', () => {
  it('unpack(pack(codes)) is the identity, dense for 2/3/4/8 bits, any length', () => {
    const r = rng(7);
    for (const bits of [2, 3, 4, 8, 16] as CodeBits[]) {
      for (const d of [1, 17, 64, 100, 128]) {
        const codes = Array.from({ length: d }, () => Math.floor(r() * 2 ** bits));
        const buf = new Uint8Array(rowCodeBytes(d, bits));
        packRow(codes, bits, buf);
        expect(Array.from(unpackRow(buf, bits, d))).toEqual(codes);
        expect(buf.length).toBe(Math.ceil(d / CHUNK) * 8 * bits);
      }
    }
    expect(rowCodeBytes(64, 3)).toBe(24); // 3-bit codes take 3 bits, not a 4-bit slot
  });
});

describe.each([1, 2])('quantized attention, wasm (%i threads) vs reference', (threads) => {
  const kernels = kernelPair(threads);

  interface Case extends AttentionCase {
    extreme?: boolean;
    probs?: boolean;
    /** Random slots left out of each query head's softmax (the new queries' own slots stay in). */
    mask?: boolean;
  }
  const cases: Case[] = [
    { name: 'int4 per token, group 64', d: 64, numHeads: 4, numKv: 2, n: 1, visible: 100, keys: tok(4, 64), values: tok(4, 64) },
    { name: 'int8 per token, group 32', d: 64, numHeads: 6, numKv: 2, n: 3, visible: 70, keys: tok(8, 32), values: tok(8, 32), probs: true },
    { name: 'int2, group 128 > d = 36 (does not divide)', d: 36, numHeads: 3, numKv: 1, n: 2, visible: 45, keys: tok(2, 128), values: tok(2, 32) },
    { name: 'int3, d 100, group 32 (partial last group)', d: 100, numHeads: 2, numKv: 2, n: 1, visible: 65, keys: tok(3, 32), values: tok(3, 64) },
    {
      name: 'KIVI: channel keys in groups of 32 + residual ring spanning a group boundary', d: 64, numHeads: 4, numKv: 2, n: 5, visible: 90,
      keys: chan(2, 32, { ringSize: 40, qlen: 64 }), values: tok(2, 32, { ringSize: 40, qlen: 64 }), probs: true,
    },
    {
      name: 'kvquant: pre-RoPE channel keys (half layout), outliers, sinks; token values with outliers', d: 64, numHeads: 6, numKv: 2, n: 2, visible: 130,
      keys: chan(3, 0, { ocap: 2, sinks: 1, rope: true }), values: tok(3, 64, { ocap: 1, sinks: 1 }), probs: true,
    },
    {
      name: 'kvquant 2-bit, interleaved RoPE, d 72 (scalar rope tail)', d: 72, numHeads: 2, numKv: 1, n: 1, visible: 77, interleaved: true,
      keys: chan(2, 0, { ocap: 1, sinks: 4, rope: true }), values: tok(2, 72, { ocap: 3, sinks: 4 }),
    },
    {
      name: 'kvquant 4-bit, interleaved RoPE, d 64 (vector de-interleave)', d: 64, numHeads: 4, numKv: 2, n: 3, visible: 40, interleaved: true,
      keys: chan(4, 0, { ocap: 1, rope: true }), values: tok(4, 64, { ocap: 1 }),
    },
    {
      name: 'decode over 700 slots (threads split the slots, partial softmax merged)', d: 64, numHeads: 4, numKv: 1, n: 1, visible: 700,
      keys: chan(3, 0, { ocap: 1, sinks: 1, rope: true }), values: tok(3, 64, { ocap: 1, sinks: 1 }),
    },
    {
      name: 'decode, 3 KV heads, channel groups with a ring', d: 64, numHeads: 9, numKv: 3, n: 1, visible: 300,
      keys: chan(4, 64, { ringSize: 90, qlen: 256 }), values: tok(2, 32, { ringSize: 90, qlen: 256 }),
    },
    {
      name: 'kvquant decode over 700 slots in position order (as without eviction), 3 KV heads', d: 64, numHeads: 9, numKv: 3, n: 1,
      visible: 700, ordered: true, keys: chan(3, 0, { ocap: 1, sinks: 1, rope: true }), values: tok(3, 64, { ocap: 1, sinks: 1 }),
    },
    // plain integer codes (L[c] = c) take the integer dot-product path; random LUTs the float one
    {
      name: 'int4 decode over 1000 slots, 3 KV heads (integer path, slot ranges split across threads)', d: 64, numHeads: 9, numKv: 3, n: 1,
      visible: 1000, keys: tok(4, 64), values: tok(4, 64), integer: true,
    },
    {
      name: 'int8 keys in groups of 16, int2 values, partial last tile, several queries', d: 64, numHeads: 4, numKv: 2, n: 3, visible: 77,
      keys: tok(8, 16), values: tok(2, 128), integer: true, probs: true,
    },
    {
      name: 'int3, d 128, groups of 32 keys, residual ring past qlen', d: 128, numHeads: 4, numKv: 1, n: 2, visible: 150,
      keys: tok(3, 32, { ringSize: 40, qlen: 120 }), values: tok(3, 128, { ringSize: 40, qlen: 120 }), integer: true,
    },
    {
      name: 'kvquant-style values: LUT codes, 3 outliers per row (channels may repeat), 2 sinks, 800 slots', d: 64, numHeads: 6, numKv: 2,
      n: 1, visible: 800, keys: chan(2, 0, { ocap: 1, sinks: 2, rope: true }), values: tok(2, 64, { ocap: 3, sinks: 2 }),
    },
    // prefill: blocks of queries share each decoded tile
    {
      name: 'chunked prefill, 37 queries (blocks of 16 and a partial one), kvquant-style streams, probabilities', d: 64, numHeads: 6, numKv: 2,
      n: 37, visible: 60, keys: chan(3, 0, { ocap: 1, sinks: 1, rope: true }), values: tok(3, 64, { ocap: 1, sinks: 1 }), probs: true,
    },
    {
      name: 'chunked prefill, 20 queries on the integer path, 3 KV heads', d: 64, numHeads: 9, numKv: 3, n: 20, visible: 90,
      keys: tok(4, 32), values: tok(4, 64), integer: true,
    },
    {
      name: 'bfloat16 rows (keys before RoPE, d 48)', d: 48, numHeads: 4, numKv: 2, n: 2, visible: 90,
      keys: tok(16, 48, { rope: true }), values: tok(16, 48),
    },
    // masks (heads=adakv: the slots past a shorter head's end)
    {
      name: 'mask, int4 integer path, several queries, probabilities', d: 64, numHeads: 4, numKv: 2, n: 3, visible: 70,
      keys: tok(4, 32), values: tok(4, 64), integer: true, probs: true, mask: true,
    },
    {
      name: 'mask, kvquant-style streams, decode with probabilities', d: 64, numHeads: 6, numKv: 2, n: 1, visible: 300,
      keys: chan(3, 0, { ocap: 1, sinks: 1, rope: true }), values: tok(3, 64, { ocap: 1, sinks: 1 }), probs: true, mask: true,
    },
    {
      name: 'mask, int4 decode over 1000 slots (slot ranges split across threads)', d: 64, numHeads: 9, numKv: 3, n: 1, visible: 1000,
      keys: tok(4, 64), values: tok(4, 64), integer: true, mask: true,
    },
    {
      name: 'extreme magnitudes stay finite', d: 64, numHeads: 2, numKv: 1, n: 2, visible: 50, extreme: true,
      keys: tok(4, 32, { ocap: 2 }), values: chan(8, 32, { ocap: 1, sinks: 2 }),
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const r = rng(c.d * 131 + c.visible + threads);
      const cap = c.visible + c.n + 7;
      const mk = (s: StreamSpec) => randomStream(r, s, c.numKv, cap, c.d, c.extreme === true, c.integer === true);
      const keys = mk(c.keys);
      const values = mk(c.values);
      const positions = new Int32Array(c.numKv * cap).map((_, i) => (c.ordered === true || i % cap < 6 ? i % cap : Math.floor(r() * 9000)));
      const q = randomF32(r, c.n * c.numHeads * c.d, c.extreme ? 1e-6 : 2);
      const mask = Uint8Array.from({ length: c.numHeads * cap }, (_, i) => (i % cap < c.visible && r() < 0.6 ? 1 : 0));
      const run = (k: Kernels) => {
        const rope = new RopeTables(k, new Rope({ headDim: c.d, ropeTheta: 10000, ropeLayout: c.interleaved === true ? 'interleaved' : 'half' }));
        rope.ensure(9000);
        const out = k.arena.alloc(q.length * 4);
        k.arena.f32(out, q.length).fill(Number.NaN);
        const lp = c.probs ? k.arena.alloc(c.numHeads * cap * 4) : 0;
        const rc = c.probs ? k.arena.alloc(c.numHeads * cap * 4) : 0;
        const args: QuantAttentionArgs = {
          out, q: put(k, q), n: c.n, visible: c.visible, capacity: cap, numHeads: c.numHeads, numKvHeads: c.numKv, headDim: c.d,
          scale: 1 / Math.sqrt(c.d), lastProbs: lp, received: rc, positions: put(k, positions),
          keys: keys(k), values: values(k), ropeLo: rope.lo, ropeHi: rope.hi, ropeInterleaved: c.interleaved === true,
          mask: c.mask ? put(k, mask) : 0,
        };
        k.quantAttention(args);
        const res = {
          out: k.arena.f32(out, q.length).slice(),
          lp: lp ? k.arena.f32(lp, c.numHeads * cap).slice() : new Float32Array(0),
          rc: rc ? k.arena.f32(rc, c.numHeads * cap).slice() : new Float32Array(0),
          rows: [] as Float32Array[],
        };
        if (k.backend === 'reference') for (let s = 0; s < 40; s++) res.rows.push(decodeRow(k.arena, args.keys, args, s % c.numKv, s));
        return res;
      };
      const got = run(kernels.wasm);
      const want = run(kernels.ref);
      for (const v of got.out) expect(Number.isFinite(v)).toBe(true);
      // the integer value path rounds each tile's weights to i16 units of its largest (error ≤ 2^-16 of it per slot)
      expectClose(got.out, want.out, 2e-4, c.integer === true ? 1e-4 : 2e-5, `${c.name}: out`);
      expectClose(got.lp, want.lp, 2e-4, 1e-6, `${c.name}: last probabilities`);
      expectClose(got.rc, want.rc, 2e-4, 1e-6, `${c.name}: received`);
      for (const row of want.rows) for (const v of row) expect(Number.isFinite(v)).toBe(true);
    });
  }
});

describe.each([1, 2])('quantize, wasm (%i threads) vs reference: identical bytes', (threads) => {
  const kernels = kernelPair(threads);

  interface Case {
    name: string;
    bits: 2 | 3 | 4 | 8 | 16;
    axis: 'token' | 'channel';
    group: number;
    kind: QuantKind;
    d: number;
    n: number;
    heads: number;
  }
  const cases: Case[] = [
    { name: 'int4 per token, group 64', bits: 4, axis: 'token', group: 64, kind: 'int', d: 64, n: 40, heads: 2 },
    { name: 'int2 per token, group 32, d 100 (partial group, partial chunk)', bits: 2, axis: 'token', group: 32, kind: 'int', d: 100, n: 9, heads: 3 },
    { name: 'int3 per token, group 128 > d', bits: 3, axis: 'token', group: 128, kind: 'int', d: 72, n: 17, heads: 1 },
    { name: 'int8 per token, group 32', bits: 8, axis: 'token', group: 32, kind: 'int', d: 64, n: 5, heads: 2 },
    { name: 'nf3 per token (kvquant values)', bits: 3, axis: 'token', group: 64, kind: 'unit', d: 64, n: 33, heads: 2 },
    { name: 'nf4 per channel, one group (kvquant keys)', bits: 4, axis: 'channel', group: 0, kind: 'unit', d: 64, n: 21, heads: 2 },
    { name: 'nf2 per channel', bits: 2, axis: 'channel', group: 0, kind: 'unit', d: 128, n: 7, heads: 1 },
    { name: 'int2 per channel, groups of 32 slots (KIVI keys)', bits: 2, axis: 'channel', group: 32, kind: 'int', d: 64, n: 70, heads: 2 },
    { name: 'bfloat16 (round to nearest even, NaN kept)', bits: 16, axis: 'token', group: 48, kind: 'int', d: 48, n: 13, heads: 2 },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const r = rng(c.d * 7 + c.n + c.bits);
      const cap = c.n + 40;
      const from = 3;
      const numKv = c.heads + 1; // rows go to heads [1, heads]
      const rows = randomF32(r, c.n * c.heads * c.d, 3);
      // awkward rows: constant (zero range), NaN, ±Infinity, beyond f16, tiny, exact half steps
      rows.fill(0.25, 0, c.d);
      for (let i = 2 * c.d; i < rows.length; i += 37) {
        const pick = Math.floor(r() * 6);
        rows[i] = [Number.NaN, Infinity, -Infinity, 1e6, 1e-9, Math.round(rows[i]! * 4) / 4 + 0.125][pick]!;
      }
      const groups = c.axis === 'token' ? Math.ceil(c.d / c.group) : 0;
      const phs = c.axis === 'token' ? cap * groups * 4 : (c.group > 0 ? Math.ceil(cap / c.group) : 1) * c.d * 4;
      const params = new Uint32Array((numKv * phs) / 4);
      if (c.axis === 'channel') {
        for (let i = 0; i < params.length; i++) {
          const scale = r() < 0.05 ? 0 : r() * 2;
          params[i] = (f32ToF16(scale) | (f32ToF16((r() * 2 - 1) * 2) << 16)) >>> 0;
        }
      }
      const levels = c.kind === 'unit' ? normalFloat(c.bits) : [];
      const mids = Float64Array.from(levels.slice(1), (l, i) => (levels[i]! + l) / 2);
      const rb = rowCodeBytes(c.d, c.bits);
      const run = (k: Kernels) => {
        const stream: QuantStream = {
          codes: k.arena.alloc(numKv * cap * rb), bits: c.bits, lut: 0, axis: c.axis, group: c.group, params: put(k, params),
          paramsHeadStride: phs, outliers: 0, ocap: 0, ring: 0, ringSize: 0, qlen: 1 << 30, sinkRows: 0, sinks: 0, rope: false,
        };
        k.quantize({
          src: put(k, rows), n: c.n, head0: 1, heads: c.heads, from, capacity: cap, headDim: c.d, stream, kind: c.kind,
          mids: mids.length ? put(k, mids) : 0, midsLength: mids.length,
        });
        return { codes: k.arena.u8(stream.codes, numKv * cap * rb).slice(), params: new Uint32Array(k.arena.memory.buffer, stream.params, params.length).slice() };
      };
      const got = run(kernels.wasm);
      const want = run(kernels.ref);
      if (c.bits === 16) expect(new Uint16Array(want.codes.buffer, (1 * cap + from) * rb, c.d)).toEqual(toBf16(rows.subarray(0, c.d)));
      expect(Buffer.from(got.codes).equals(Buffer.from(want.codes))).toBe(true);
      expect(Array.from(got.params)).toEqual(Array.from(want.params));
      // the reference is exact: a row decodes to within half a step of its (finite, in-range) numbers
      if (c.kind === 'int' && c.axis === 'token' && c.bits !== 16) {
        // row 1 (plain numbers): token t, head 1 + j
        const t = Math.floor(1 / c.heads);
        const j = 1 % c.heads;
        const slot = ((1 + j) * cap + from + t);
        const codes = unpackRow(want.codes.subarray(slot * rb, (slot + 1) * rb), c.bits, c.d);
        const x = rows.subarray(c.d, 2 * c.d);
        const w = want.params[((1 + j) * phs) / 4 + (from + t) * groups]!;
        const s = f16ToF32(w & 0xffff);
        const z = f16ToF32(w >>> 16);
        const first = Array.from(x.subarray(0, Math.min(c.d, c.group)));
        for (let i = 0; i < first.length; i++) expect(Math.abs(codes[i]! * s + z - first[i]!)).toBeLessThanOrEqual(s / 2 + 1e-3);
      }
    });
  }
});
