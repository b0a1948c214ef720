import { describe, expect, it } from 'vitest';
import { KvLimitError, UsageError } from '../../src/errors.js';
import type { Model } from '../../src/engine/model.js';
import { REF6M_DIR, withModel } from './helpers.js';

describe('maxKvBytes', () => {
  let model: Model;
  withModel(REF6M_DIR, (m) => (model = m));

  const text = 'Once upon a time there was a little town by the sea, and every morning the boats went out. '.repeat(16);

  it('stops a cache that never evicts before it passes the limit, with a typed error', () => {
    const ids = model.tokenizer.encode(text).slice(0, 200);
    const session = model.session({ cache: 'full+fp16', maxKvBytes: 100 * 1024 });
    const perToken = 2 * model.config.numLayers * model.config.numKvHeads * model.config.headDim * 2;
    const fits = Math.floor((100 * 1024) / perToken);
    expect(() => session.score(ids, { mode: 'decode' })).toThrow(KvLimitError);
    // it stopped at the token that would have passed the limit, not after
    expect(session.cache.layerLengths()).toEqual(new Array(model.config.numLayers).fill(fits));
    expect(session.cache.peakBytes()).toBeLessThanOrEqual(100 * 1024);
    expect(() => session.feed([1])).toThrow(/would hold .* past maxKvBytes 100\.0 KiB .*never evicts/);
  });

  it('makes an evicting policy evict early, staying under the limit and keeping the newest tokens', () => {
    const ids = model.tokenizer.encode(text).slice(0, 300);
    const limit = 400 * 1024; // about 130 tokens of f16 keys and values with their positions
    const session = model.session({ cache: 'window(sinks=4,recent=1000)+fp16', maxKvBytes: limit });
    const logprobs = session.score(ids, { mode: 'decode' });
    expect(logprobs.every(Number.isFinite)).toBe(true);
    expect(session.cache.peakBytes()).toBeLessThanOrEqual(limit);
    const held = session.cache.heldPositions(0, 0).sort((a, b) => a - b);
    expect(ids.length).toBe(300);
    expect(held.length).toBeLessThan(300);
    expect(held.length).toBeGreaterThan(100);
    // the window policy chose what to drop: the sinks and the newest tokens stayed
    expect(held.slice(0, 4)).toEqual([0, 1, 2, 3]);
    expect(held[held.length - 1]).toBe(ids.length - 1);
    // chunked prefill too: chunks that would pass the limit make room first
    const chunked = model.session({ cache: 'h2o(budget=1000)+fp16', maxKvBytes: limit, chunkSize: 32 });
    chunked.feed(ids);
    expect(chunked.cache.peakBytes()).toBeLessThanOrEqual(limit);
  });

  it('refuses a limit that is not a positive number', () => {
    expect(() => model.session({ maxKvBytes: 0 })).toThrow(UsageError);
  });
});
