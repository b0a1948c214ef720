import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/engine/model.js';
import { REF6M_DIR, STORIES_BIN, withModel } from '../engine/helpers.js';

const story = JSON.parse(fs.readFileSync(path.resolve('../shared/data/stories260k/samples.jsonl'), 'utf8').split('\n')[0]!) as { ids: number[] };
const ids = story.ids.slice(0, 160);

describe('KV cache with eviction (stories260K)', () => {
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  it('full gives the same log-probabilities, bit for bit, as a policy whose budget is never reached', () => {
    const full = model.session({ cache: 'full+fp32' }).score(ids, { mode: 'decode' });
    const roomy = model.session({ cache: 'h2o(budget=512)+fp32' }).score(ids, { mode: 'decode' });
    expect(Array.from(roomy)).toEqual(Array.from(full));
  });

  it.each([
    'window(sinks=4,recent=28)',
    'h2o(budget=32,recent=8)',
    'scissorhands(budget=32,window=16,recent=4,drop=8)',
    'tova(budget=32)',
    'snapkv(budget=32,window=8,pool=3)',
    'random(budget=32,seed=1)',
    'knorm(budget=32)',
    'h2o(budget=32,schedule=pyramid)',
  ])('%s never holds more than its budget, and keeps distinct positions with the newest among them', (spec) => {
    const session = model.session({ cache: spec });
    const cache = session.cache;
    let checked = 0;
    session.score(ids, {
      mode: 'decode',
      onLogits: (index) => {
        for (let l = 0; l < model.config.numLayers; l++) {
          const budget = cache.policy.budget(l);
          expect(cache.layerLengths()[l]).toBeLessThanOrEqual(budget);
          for (let h = 0; h < model.config.numKvHeads; h++) {
            const held = cache.heldPositions(l, h);
            expect(new Set(held).size).toBe(held.length);
            if (!spec.startsWith('random') && !spec.startsWith('knorm') && !spec.startsWith('tova')) expect(held).toContain(index);
          }
        }
        checked++;
      },
    });
    expect(checked).toBe(ids.length - 1);
    expect(cache.peakBytes()).toBeGreaterThan(0);
  });

  it('keeps what is stored intact through evictions: layer-0 keys depend only on their own token', () => {
    const full = model.session({ cache: 'full' });
    full.feed(ids);
    const evicting = model.session({ cache: 'h2o(budget=24,recent=4)' });
    evicting.score(ids, { mode: 'decode' });
    for (let h = 0; h < model.config.numKvHeads; h++) {
      const held = evicting.cache.heldPositions(0, h);
      expect(held.length).toBe(24);
      held.forEach((position, slot) => {
        const want = full.cache.codec.readRow(0, h, position, 'key');
        const got = evicting.cache.codec.readRow(0, h, slot, 'key');
        for (let i = 0; i < want.length; i++) expect(got[i]).toBeCloseTo(want[i]!, 5);
      });
    }
  });

  it('compresses a prompt once it is in, to the budget resolved from its length', () => {
    const session = model.session({ cache: 'h2o(budget=0.25,recent=0.05)' });
    session.feed(ids.slice(0, 100));
    expect(session.cache.layerLengths()).toEqual(new Array(model.config.numLayers).fill(25));
    session.feed([ids[100]!]);
    expect(session.cache.layerLengths()).toEqual(new Array(model.config.numLayers).fill(25));
  });

  it('bytesPerToken scales by the mean tokens per layer when pyramid budgets hold different counts', () => {
    const session = model.session({ cache: 'h2o(budget=32,schedule=pyramid)+fp16' });
    session.score(ids, { mode: 'decode' });
    const lengths = session.cache.layerLengths();
    expect(new Set(lengths).size).toBeGreaterThan(1);
    // f16 keys and values, slot positions and H2O's per-slot score all grow with the slots, nothing else
    const slots = lengths.reduce((a, b) => a + b, 0) * model.config.numKvHeads;
    expect(session.cache.bytes()).toBe(slots * (2 * model.config.headDim * 2 + 4 + 4));
    expect(session.cache.meanLength() * session.cache.bytesPerToken()).toBeCloseTo(session.cache.bytes(), 6);
  });

  it('counts real bytes: keys and values for the full cache, which stores no positions (slot p holds position p)', () => {
    const session = model.session({ cache: 'full+fp32' });
    session.feed(ids.slice(0, 50));
    const c = model.config;
    expect(session.cache.bytes()).toBe(50 * c.numLayers * c.numKvHeads * (2 * c.headDim * 4));
    const half = model.session({ cache: 'full' }); // fp16, the default codec
    half.feed(ids.slice(0, 50));
    expect(half.cache.bytes()).toBe(50 * c.numLayers * c.numKvHeads * (2 * c.headDim * 2));
    expect(half.cache.heldPositions(c.numLayers - 1, 0)).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });

  it('a policy that evicts stores each slot\'s position (4 bytes) beside its own state', () => {
    const session = model.session({ cache: 'h2o(budget=512)' });
    session.feed(ids.slice(0, 50));
    const c = model.config;
    // keys and values in fp16 (the default codec), the position, and H2O's accumulated attention (one f32)
    expect(session.cache.bytes()).toBe(50 * c.numLayers * c.numKvHeads * (2 * c.headDim * 2 + 4 + 4));
  });

  it.each(['h2o(budget=16)', 'snapkv(budget=16)+fp16', 'qhitter(budget=16,default=4,recent=4)'])(
    '%s holds, once a long prompt is compressed, exactly what it holds when fed only as many tokens as it kept',
    (spec) => {
      const evicted = model.session({ cache: spec });
      evicted.feed(ids.slice(0, 200));
      const kept = evicted.cache.meanLength();
      expect(kept).toBeLessThanOrEqual(16);
      const fitting = model.session({ cache: spec });
      fitting.feed(ids.slice(0, kept));
      expect(evicted.cache.layerLengths()).toEqual(fitting.cache.layerLengths());
      // the policy's per-slot state counts the held slots, not the 200 it saw
      expect(evicted.cache.bytes()).toBe(fitting.cache.bytes());
      expect(evicted.cache.heldBytes()).toBe(fitting.cache.heldBytes());
      expect(evicted.cache.peakBytes()).toBeGreaterThan(5 * evicted.cache.heldBytes());
    },
  );
});

describe('KV bytes per token (ref-6m)', () => {
  let model: Model;
  withModel(REF6M_DIR, (m) => (model = m));

  it('full+kvquant(bits=3) holds at most a quarter of fp16 per token over 2048 tokens', () => {
    const c = model.config;
    const session = model.session({ cache: 'full+kvquant(bits=3)', chunkSize: 256 });
    const tokens = 2048;
    session.feed(Array.from({ length: tokens }, (_, i) => (i * 7919) % c.vocabSize));
    const fp16PerToken = c.numLayers * c.numKvHeads * 2 * c.headDim * 2;
    expect(session.cache.peakBytes() / tokens).toBeLessThanOrEqual(fp16PerToken / 4);
    // per slot: two 3-bit code rows, the value's f16 scale and zero, one 32-bit outlier entry per row
    const perSlot = 2 * (c.headDim * 3) / 8 + 4 + 2 * 4;
    expect(session.cache.peakBytes()).toBeGreaterThan(tokens * c.numLayers * c.numKvHeads * perSlot);
  });
});
