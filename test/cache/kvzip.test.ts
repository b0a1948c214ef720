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

  it('past `chunk` held tokens: chunks of the held positions, each led in by the last 8 of the one before; a chunk scores its own slots over the softmax of the sinks, the chunk and the repeat', () => {
    const [numLayers, numKvHeads, numHeads, capacity, length] = [1, 1, 2, 512, 300];
    const kind = POLICIES.get('kvzip') as PolicyKind;
    const policy = kind.create(withDefaults(parseSpec('kvzip(budget=20,sinks=2,chunk=128)').policy, kind.schema), { numLayers, numKvHeads, numHeads, capacity });
    // held positions with gaps (an earlier cut): 0, 2, 4, …
    const positions = Int32Array.from({ length }, (_, i) => 2 * i);
    policy.onAppend(0, 0, 0, length, positions, undefined);
    const chunks = policy.reconstructionChunks!([...positions]);
    expect(chunks.map((c) => c.positions.length)).toEqual([128, 128, 44]);
    expect(chunks.map((c) => c.prompt)).toEqual(['\n\nRepeat the previous context exactly.', ...new Array(2).fill('\n\nRepeat the part of the previous context exactly, starting with ')]);
    expect(chunks[0]!.lead).toEqual([]);
    expect(chunks[1]!.lead).toEqual([...positions.subarray(120, 128)]);
    expect(chunks[2]!.positions).toEqual([...positions.subarray(256)]);
    policy.beginReconstruction!([[length]]);
    const random = seededRandom(3);
    const want = new Array<number>(length).fill(0);
    for (const [c, chunk] of chunks.entries()) {
      policy.beginChunk!(chunk);
      const inChunk = (s: number): boolean => s >= 128 * c && s < 128 * c + chunk.positions.length;
      for (let q = 0; q < 3; q++) {
        const tail = new Float32Array(numHeads * capacity);
        for (let j = 0; j < numHeads; j++) {
          let sum = 0;
          for (let s = 0; s < length + q + 1; s++) sum += tail[j * capacity + s] = random();
          for (let s = 0; s < length + q + 1; s++) tail[j * capacity + s]! /= sum;
          // the definition: softmax over the sinks, the chunk's slots and the repeat's own (slots past the held ones)
          let kept = 0;
          for (let s = 0; s < length + q + 1; s++) if ((s < length && positions[s]! < 2) || inChunk(s) || s >= length) kept += tail[j * capacity + s]!;
          for (let s = 0; s < length; s++) if (inChunk(s)) want[s] = Math.max(want[s]!, tail[j * capacity + s]! / kept);
        }
        policy.observe({ layer: 0, n: 1, length: length + q + 1, capacity, group: 2, received: new Float32Array(0), tail, tailRows: 1 });
      }
    }
    // every slot by its own chunk only (the sinks, kept whatever, by the first)
    const got = policy.heldScores!(0, 0, length);
    for (let s = 0; s < length; s++) expect(got[s]!, `slot ${s}`).toBeCloseTo(want[s]!, 6);
    policy.endReconstruction!(0, 0);
    expect(policy.stats!()).toMatchObject({ reconstructions: 1, reconstruction_chunks: 3 });
  });
});

describe('KVzip cache (stories260K)', () => {
  const ids = storyIds(120);
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  /** A session of `spec` fed `tokens` as one prompt (all of them in its history). */
  function fed(spec: string, tokens: number[]) {
    const session = model.session({ cache: spec });
    session.feed(tokens);
    expect(session.tokens.length).toBe(tokens.length);
    return { session, cache: session.cache, c: model.config };
  }

  it('a prompt is cut to layers × heads × (budget − every) by one threshold, the repeat leaves nothing behind, and the note states the cost', () => {
    const { session, cache, c } = fed('kvzip(budget=24,every=8)', ids);
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

  it('chunks a prompt past `chunk` tokens: each chunk scored, the repeat dropped, the cost line counting every chunk', () => {
    const long = storyIds(450);
    const { cache, c } = fed('kvzip(budget=40,every=8,chunk=128)', long);
    expect(cache.heldSlots()).toBe(c.numLayers * c.numKvHeads * 32);
    const first = model.tokenizer.encode('\n\nRepeat the previous context exactly.', { addBos: false }).length;
    const later = model.tokenizer.encode('\n\nRepeat the part of the previous context exactly, starting with ', { addBos: false }).length;
    const chunks = Math.ceil(long.length / 128);
    const tokens = first + long.length + (chunks - 1) * (later + 8);
    expect(cache.note()).toContain(`1 reconstruction pass in ${chunks} chunks of at most 128: ${tokens} extra tokens`);
    // every chunk's scores come out: each chunk keeps tokens past the sinks
    const kept = new Set<number>();
    for (let l = 0; l < c.numLayers; l++) for (let h = 0; h < c.numKvHeads; h++) for (const p of cache.heldPositions(l, h)) kept.add(p);
    for (let i = 0; i < chunks; i++) expect([...kept].some((p) => p >= Math.max(4, 128 * i) && p < 128 * (i + 1)), `chunk ${i}`).toBe(true);
  });

  it('scores a story in decode mode within its budget', () => {
    const session = model.session({ cache: 'kvzip(budget=32)' });
    const c = model.config;
    const logprobs = session.score(ids, { mode: 'decode', onLogits: () => expect(session.cache.heldSlots()).toBeLessThanOrEqual(c.numLayers * c.numKvHeads * 32) });
    expect(logprobs.every(Number.isFinite)).toBe(true);
  });
});
