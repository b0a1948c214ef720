import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/engine/model.js';
import { LimitError, UsageError } from '../../src/errors.js';
import { STORIES_BIN, withModel } from '../engine/helpers.js';

const stories = fs.readFileSync(path.resolve('../shared/data/stories260k/samples.jsonl'), 'utf8').split('\n').filter(Boolean)
  .map((l) => (JSON.parse(l) as { ids: number[] }).ids);

describe('streaming past the trained context (stories260K, context 512)', () => {
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  it('with nothing evicted, streaming positions are the positions: same log-probabilities as the plain cache', () => {
    const ids = stories[0]!.slice(0, 120);
    // f32: fp16 would round keys before RoPE (streaming) in one and after it in the other
    const plain = model.session({ cache: 'window(sinks=4,recent=400)+fp32' }).score(ids, { mode: 'decode' });
    const streamed = model.session({ cache: 'window(sinks=4,recent=400)+fp32', streaming: true }).score(ids, { mode: 'decode' });
    expect(Array.from(streamed)).toEqual(Array.from(plain));
  });

  it('runs a sequence three times the context with a bounded cache and keeps perplexity flat', () => {
    const ids = stories.slice(0, 6).flat(); // ~3000 tokens of stories back to back
    expect(ids.length).toBeGreaterThan(3 * 512);
    const session = model.session({ cache: 'window(sinks=4,recent=124)+fp16', streaming: true });
    const logps = session.score(ids, { mode: 'decode' });
    expect(Math.max(...session.cache.layerLengths())).toBeLessThanOrEqual(128);
    const ppl = (from: number, to: number) => Math.exp(-logps.slice(from, to).reduce((a, b) => a + b, 0) / (to - from));
    const early = ppl(0, 500);
    const late = ppl(ids.length - 501, ids.length - 1);
    expect(Number.isFinite(late)).toBe(true);
    expect(late).toBeLessThan(early * 1.5);
  });

  for (const cache of ['h2o(budget=48)+fp16', 'window(sinks=4,recent=60)']) {
    it(`after evictions (${cache}), each held token's RoPE position is its rank among the held positions`, () => {
      const session = model.session({ cache, streaming: true });
      session.score(stories[1]!.slice(0, 200), { mode: 'decode' });
      const c = session.cache;
      expect(c.heldPositions(0, 0).length).toBeLessThan(100); // most of the 200 were evicted
      for (let layer = 0; layer < model.config.numLayers; layer++) {
        for (let head = 0; head < model.config.numKvHeads; head++) {
          const held = c.heldPositions(layer, head);
          const sorted = [...held].sort((a, b) => a - b);
          expect(c.heldRanks(layer, head)).toEqual(held.map((p) => sorted.indexOf(p)));
        }
      }
    });
  }

  it('without streaming the context limit is an error that suggests streaming; streaming needs a budget', () => {
    const ids = stories.slice(0, 2).flat();
    expect(() => model.session({ cache: 'window(sinks=4,recent=124)' }).score(ids.concat(ids))).toThrow(LimitError);
    expect(() => model.session({ cache: 'full', streaming: true })).toThrow(UsageError);
  });
});
