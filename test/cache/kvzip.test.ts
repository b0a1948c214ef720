import { describe, expect, it } from 'vitest';
import { POLICIES, parseSpec } from '../../src/cache/registry.js';
import { withDefaults } from '../../src/cache/spec.js';
import type { PolicyKind } from '../../src/cache/policy.js';
import type { Model } from '../../src/engine/model.js';
import { STORIES_BIN, withModel } from '../engine/helpers.js';
import { seededRandom } from '../../src/util/random.js';
import { storyIds } from './helpers.js';

describe('KVzip scores and its one threshold, against the paper\'s definition', () => {
  it('keeps the sinks and the top scores over every layer and head, a score being the most attention any repeat query of the group paid', () => {
    const [numLayers, numKvHeads, numHeads, capacity, length] = [2, 2, 4, 64, 30];
    const kind = POLICIES.get('kvzip') as PolicyKind;
    const policy = kind.create(withDefaults(parseSpec('kvzip(budget=10,every=2,sinks=2)').policy, kind.schema), { numLayers, numKvHeads, numHeads, capacity });
    const positions = Int32Array.from({ length }, (_, i) => i);
    for (let l = 0; l < numLayers; l++) for (let h = 0; h < numKvHeads; h++) policy.onAppend(l, h, 0, length, positions, undefined);
    expect(policy.reconstructionDue!(numLayers * numKvHeads * length)).toBe(true);
    policy.beginReconstruction!([[length, length], [length, length]]);
    const random = seededRandom(9);
    const best = Array.from({ length: numLayers }, () => Array.from({ length: numKvHeads }, () => new Array<number>(length).fill(0)));
    for (let q = 0; q < 6; q++) {
      for (let l = 0; l < numLayers; l++) {
        const tail = new Float32Array(numHeads * capacity);
        for (let j = 0; j < numHeads; j++) {
          // layer 1 attends sharply, layer 0 diffusely: the threshold must give layer 1's best more room
          for (let s = 0; s < length + q; s++) tail[j * capacity + s] = l === 1 ? random() ** 8 : 0.02 + 0.01 * random();
          for (let s = 0; s < length; s++) best[l]![Math.floor(j / 2)]![s] = Math.max(best[l]![Math.floor(j / 2)]![s]!, Math.fround(tail[j * capacity + s]!));
        }
        policy.observe({ layer: l, n: 1, length: length + q, capacity, group: 2, received: new Float32Array(0), tail, tailRows: 1 });
      }
    }
    policy.endReconstruction!(36, 1);
    // the cut: 2 layers × 2 heads × (10 − 2) slots; sinks (positions 0, 1) and each head's best stay, the rest by one threshold
    const entries: { l: number; h: number; s: number; score: number }[] = [];
    const kept = best.map((heads) => heads.map(() => new Set<number>([0, 1])));
    best.forEach((heads, l) => heads.forEach((scores, h) => {
      const others = scores.map((score, s) => ({ l, h, s, score })).filter((e) => e.s >= 2);
      const top = others.reduce((a, b) => (b.score > a.score ? b : a));
      kept[l]![h]!.add(top.s);
      entries.push(...others.filter((e) => e !== top));
    }));
    entries.sort((a, b) => b.score - a.score);
    for (const e of entries.slice(0, 32 - 4 * 3)) kept[e.l]![e.h]!.add(e.s);
    const keepPerLayer = kept.map((heads) => heads.reduce((n, k) => n + k.size, 0));
    expect(keepPerLayer[1]).toBeGreaterThan(keepPerLayer[0]!);
    for (let l = 0; l < numLayers; l++) {
      expect(policy.budget(l) * numKvHeads).toBeCloseTo(keepPerLayer[l]!, 9);
      const views = [0, 1].map(() => ({ positions, length }));
      const out = [new Int32Array(length), new Int32Array(length)];
      const counts = new Int32Array(numKvHeads);
      policy.chooseHeads!(l, 2 * length - keepPerLayer[l]!, views, out, counts);
      for (let h = 0; h < numKvHeads; h++) {
        const evicted = new Set(out[h]!.subarray(0, counts[h]!));
        expect([...positions].filter((s) => !evicted.has(s))).toEqual([...kept[l]![h]!].sort((a, b) => a - b));
      }
    }
  });
});

describe('KVzip cache (stories260K)', () => {
  const ids = storyIds(120);
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  it('a prompt is cut to layers × heads × (budget − every) by one threshold, the repeat leaves nothing behind, and the note states the cost', () => {
    const session = model.session({ cache: 'kvzip(budget=24,every=8)' });
    session.feed(ids);
    const cache = session.cache;
    const c = model.config;
    expect(session.tokens.length).toBe(ids.length);
    expect(cache.heldSlots()).toBe(c.numLayers * c.numKvHeads * 16);
    // keys and values in fp16, the slot's position, a sink flag; the scores are transient
    expect(cache.bytes()).toBe(cache.heldSlots() * (2 * c.headDim * 2 + 4 + 1));
    const perLayer = Array.from({ length: c.numLayers }, (_, l) => cache.headCountsOf(l).reduce((a, b) => a + b, 0));
    expect(new Set(perLayer).size).toBeGreaterThan(1);
    for (let l = 0; l < c.numLayers; l++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const held = cache.heldPositions(l, h);
        expect(Math.max(...held)).toBeLessThan(ids.length);
        expect(held).toEqual(expect.arrayContaining([0, 1, 2, 3]));
      }
    }
    const prompt = model.tokenizer.encode('\n\nRepeat the previous context exactly.', { addBos: false }).length;
    expect(cache.note()).toContain(`1 reconstruction pass: ${prompt + ids.length} extra tokens`);
    // decoding goes on without a new pass until `every` tokens have come
    for (let i = 0; i < 8; i++) session.feed([ids[i]!]);
    expect(cache.heldSlots()).toBe(c.numLayers * c.numKvHeads * 24);
    session.feed([ids[8]!]);
    expect(cache.note()).toContain('2 reconstruction passes');
    expect(cache.heldSlots()).toBe(c.numLayers * c.numKvHeads * 16);
  });

  it('scores a story in decode mode within its budget', () => {
    const session = model.session({ cache: 'kvzip(budget=32)' });
    const c = model.config;
    const logprobs = session.score(ids, { mode: 'decode', onLogits: () => expect(session.cache.heldSlots()).toBeLessThanOrEqual(c.numLayers * c.numKvHeads * 32) });
    expect(logprobs.every(Number.isFinite)).toBe(true);
  });
});
