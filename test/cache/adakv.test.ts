import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/engine/model.js';
import { ropeOf } from '../../src/kernels/rope.js';
import { POLICIES, parseSpec } from '../../src/cache/registry.js';
import { withDefaults } from '../../src/cache/spec.js';
import type { PolicyKind } from '../../src/cache/policy.js';
import { STORIES_BIN, withModel } from '../engine/helpers.js';
import { seededRandom } from '../../src/util/random.js';
import { storyIds } from './helpers.js';

const ids = storyIds(160);

/**
 * AdaKV's selection as kvpress's AdaKVPress defines it, written from the paper's description: keep
 * n_kept = budget per head on average; in each head the top ⌊alpha·n_kept⌋ scores are raised to the
 * maximum; the heads' scores are flattened and the heads·(n − n_kept) lowest evicted.
 */
function kvpressAdaKV(scores: number[][], budget: number, alpha: number): number[][] {
  const safe = Math.floor(alpha * budget);
  const flat: { h: number; s: number; score: number }[] = [];
  scores.forEach((row, h) => {
    const top = new Set([...row.keys()].sort((a, b) => row[b]! - row[a]!).slice(0, safe));
    row.forEach((score, s) => flat.push({ h, s, score: top.has(s) ? Infinity : score }));
  });
  flat.sort((a, b) => a.score - b.score);
  const total = scores.reduce((n, r) => n + r.length, 0);
  const evicted = scores.map(() => [] as number[]);
  for (const e of flat.slice(0, total - scores.length * budget)) evicted[e.h]!.push(e.s);
  return evicted.map((e) => e.sort((a, b) => a - b));
}

describe('AdaKV (heads=adakv)', () => {
  it.each([0, 0.2, 0.5])('chooses across heads as kvpress does (alpha=%s)', (alpha) => {
    const heads = 4;
    const length = 40;
    const budget = 10;
    const parsed = parseSpec(`tova(budget=${budget},heads=adakv,floor=${alpha})`);
    const kind = POLICIES.get('tova') as PolicyKind;
    const policy = kind.create(withDefaults(parsed.policy, kind.schema), { numLayers: 1, numKvHeads: heads, capacity: 64 });
    const random = seededRandom(7 + alpha * 10);
    // one query head per KV head; head 0 peaked, the others flat-ish, so counts must move between heads
    const scores = Array.from({ length: heads }, (_, h) => Array.from({ length }, () => (h === 0 ? random() ** 6 : 0.2 + 0.1 * random())));
    const block = new Float32Array(heads * 64);
    scores.forEach((row, h) => block.set(row, h * 64));
    policy.observe({ layer: 0, n: 1, length, capacity: 64, group: 1, received: block, tail: block, tailRows: 1 });
    const positions = Int32Array.from({ length }, (_, i) => i);
    const views = Array.from({ length: heads }, () => ({ positions, length }));
    const out = Array.from({ length: heads }, () => new Int32Array(length));
    const counts = new Int32Array(heads);
    expect(policy.raggedHeads).toBe(true);
    policy.chooseHeads!(0, heads * (length - budget), views, out, counts);
    const got = out.map((o, h) => Array.from(o.subarray(0, counts[h]!)).sort((a, b) => a - b));
    const want = kvpressAdaKV(scores.map((r) => r.map(Math.fround)), budget, alpha);
    expect(got).toEqual(want);
    expect(new Set(got.map((g) => g.length)).size).toBeGreaterThan(1);
  });
});

describe('AdaKV cache (stories260K): heads hold different counts', () => {
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  it.each(['h2o(budget=24,heads=adakv)', 'snapkv(budget=24,window=8,heads=adakv)', 'tova(budget=24,heads=adakv)+fp32'])(
    '%s keeps each layer within heads × budget, with counts that differ between heads, and counts their real bytes',
    (spec) => {
      const session = model.session({ cache: spec });
      const cache = session.cache;
      const c = model.config;
      let ragged = 0;
      session.score(ids, {
        mode: 'decode',
        onLogits: (index) => {
          for (let l = 0; l < c.numLayers; l++) {
            const counts = cache.headCountsOf(l);
            expect(counts.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(c.numKvHeads * cache.policy.budget(l));
            if (new Set(counts).size > 1) ragged++;
            for (let h = 0; h < c.numKvHeads; h++) {
              const held = cache.heldPositions(l, h);
              expect(held.length).toBe(counts[h]);
              expect(new Set(held).size).toBe(held.length);
              if (!spec.startsWith('tova')) expect(Math.max(...held)).toBe(index); // tova keeps no recent window
            }
          }
        },
      });
      expect(ragged).toBeGreaterThan(0);
      const slots = Array.from({ length: c.numLayers }, (_, l) => cache.headCountsOf(l).reduce((a, b) => a + b, 0)).reduce((a, b) => a + b, 0);
      const bytesPerNumber = spec.endsWith('fp32') ? 4 : 2;
      // keys and values, the slot's position, the policy's one f32 per slot: held slots only
      expect(cache.bytes()).toBe(slots * (2 * c.headDim * bytesPerNumber + 4 + 4));
    },
  );

  it.each([
    [1, 'fp32', 5], [3, 'fp32', 5],
    // quantized: attention reads the codes readRow decodes (int8 queries on the integer path: looser)
    [3, 'int(bits=8)', 2], [1, 'kvquant(bits=4)', 3], [2, 'bf16', 4],
  ] as const)('attends each head over exactly the tokens it holds, %s new tokens at once, %s (a reference softmax over its held rows)', (n, codec, digits) => {
    const c = model.config;
    const session = model.session({ cache: `tova(budget=12,heads=adakv,floor=0)+${codec}` });
    session.feed(ids.slice(0, 100));
    const cache = session.cache;
    const layer = 1;
    const before = cache.headCountsOf(layer);
    expect(new Set(before).size).toBeGreaterThan(1);
    const k = model.kernels;
    const random = seededRandom(3);
    const rowNumbers = c.numHeads * c.headDim;
    const kvNumbers = c.numKvHeads * c.headDim;
    const q = Float32Array.from({ length: n * rowNumbers }, () => random() * 4 - 2);
    const key = Float32Array.from({ length: n * kvNumbers }, () => random() * 2 - 1);
    const value = Float32Array.from({ length: n * kvNumbers }, () => random() * 2 - 1);
    const positions = Int32Array.from({ length: n }, (_, i) => 100 + i);
    const [qp, kp, vp, op, pp] = [q.length * 4, key.length * 4, value.length * 4, q.length * 4, n * 4].map((b) => k.arena.alloc(b));
    k.arena.f32(qp!, q.length).set(q);
    k.arena.f32(kp!, key.length).set(key);
    k.arena.f32(vp!, value.length).set(value);
    k.arena.i32(pp!, n).set(positions);
    cache.attend(layer, qp!, kp!, vp!, positions, pp!, n, op!);
    const out = k.arena.f32(op!, q.length).slice();
    const scale = ropeOf(c).scoreScale;
    const g = c.numHeads / c.numKvHeads;
    for (let t = 0; t < n; t++) {
      for (let j = 0; j < c.numHeads; j++) {
        const h = Math.floor(j / g);
        // query t sees the head's tokens from before and the new ones up to itself
        const seen = cache.heldPositions(layer, h).map((p, s) => [p, s] as const).filter(([p]) => p <= 100 + t).map(([, s]) => s);
        expect(seen.length).toBe(before[h]! + t + 1);
        const logits = seen.map((s) => scale * cache.codec.readRow(layer, h, s, 'key').reduce((sum, x, i) => sum + x * q[(t * c.numHeads + j) * c.headDim + i]!, 0));
        const top = Math.max(...logits);
        const weights = logits.map((x) => Math.exp(x - top));
        const total = weights.reduce((a, b) => a + b, 0);
        for (let i = 0; i < c.headDim; i++) {
          const want = seen.reduce((sum, s, r) => sum + (weights[r]! / total) * cache.codec.readRow(layer, h, s, 'value')[i]!, 0);
          expect(out[(t * c.numHeads + j) * c.headDim + i]).toBeCloseTo(want, digits);
        }
      }
    }
    for (const p of [qp, kp, vp, op, pp]) k.arena.free(p!);
  });

  it('counts a quantized codec\'s real bytes per head', () => {
    const c = model.config;
    const session = model.session({ cache: 'h2o(budget=24,heads=adakv)+int(bits=4,group=32)' });
    session.score(ids, { mode: 'decode' });
    const cache = session.cache;
    expect(new Set(cache.headCountsOf(2)).size).toBeGreaterThan(1);
    // int per token: the same bytes per held slot, whichever head holds it
    const perSlot = (cache.codec.bytes(new Array(c.numLayers).fill(1)) - cache.codec.bytes(new Array(c.numLayers).fill(0))) / (c.numLayers * c.numKvHeads);
    expect(cache.bytes()).toBeCloseTo(cache.codec.bytes(new Array(c.numLayers).fill(0)) + cache.heldSlots() * (perSlot + 4 + 4), 6);
  });

  it.each([
    ['h2o(budget=8,heads=uniform,floor=2)', /floor/],
    ['scissorhands(budget=8,heads=adakv)', /scissorhands has no parameter "heads"/],
  ])('refuses %s with a clear error', (spec, problem) => {
    expect(() => model.session({ cache: spec })).toThrow(problem);
  });

  it('refuses to stream, as RoPE ranks are per layer', () => {
    expect(() => model.session({ cache: 'h2o(budget=64,heads=adakv)', streaming: true })).toThrow(/heads=adakv cannot stream/);
  });
});
