import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildCache, createCache } from '../../src/cache/build.js';
import { KVCache } from '../../src/cache/kvcache.js';
import { MaskedKVCache } from '../../src/cache/masked-kvcache.js';
import { parseSpec } from '../../src/cache/registry.js';
import { UsageError } from '../../src/errors.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { STORIES_BIN, withModel } from '../engine/helpers.js';

describe('building a cache from a spec', () => {
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));
  const build = (spec: string, streaming = false) => buildCache(model.kernels, model.config, parseSpec(spec), 16, { streaming });

  it("fills in the policy's own codec and prints the spec it built", () => {
    const parts = build('qhitter(budget=0.2,bits=3)');
    expect(parts.spec).toBe('qhitter(budget=0.2,bits=3)');
    expect(parts.codec.bitsPerValue()).toBeLessThan(32);
    expect(parts.needsRows).toBe(true);
    parts.codec.free();
    const h2o = build('h2o(budget=0.2)+fp32');
    expect(h2o.spec).toBe('h2o(budget=0.2)+fp32');
    h2o.codec.free();
  });

  it('refuses parts that do not fit, naming the problem', () => {
    expect(() => build('h2o(budget=64)+int(kaxis=channel)')).toThrow(/cannot follow evictions/);
    expect(() => build('scissorhands(mode=reference)+kvquant(bits=3)')).toThrow(/need a float codec/);
    expect(() => build('full', true)).toThrow(/fixed budget/);
    expect(() => build('scissorhands(mode=reference)', true)).toThrow(UsageError);
  });

  it('keeps an explicit codec: qhitter+fp32 stores f32, not qhitter\'s own int codec', () => {
    const parts = build('qhitter(budget=0.2)+fp32');
    expect(parts.spec).toBe('qhitter(budget=0.2)+fp32');
    expect(parts.codec.bitsPerValue()).toBe(32);
    parts.codec.free();
  });

  it('refuses per-layer lists whose length is not the layer count, and budgets beyond the context', () => {
    const { numLayers, maxContext } = model.config;
    expect(() => build('h2o(budget=[512,384])')).toThrow(new RegExp(`budget=\\[512,384\\] has 2 entries but the model has ${numLayers} layers`));
    expect(() => build(`qhitter(budget=0.2,alpha=[0.5,0.5])`)).toThrow(/alpha=\[0.5,0.5\] has 2 entries/);
    expect(() => build(`h2o(budget=${maxContext + 1})`)).toThrow(new RegExp(`budget=${maxContext + 1} tokens exceeds the model's context of ${maxContext}`));
    expect(() => build(`window(sinks=4,recent=${maxContext * 2})`)).toThrow(UsageError);
    const exact = build(`h2o(budget=[${new Array(numLayers).fill(8).join(',')}])`);
    expect(exact.policy.budget(numLayers - 1)).toBe(8);
    exact.codec.free();
  });

  it('runs masking policies in a MaskedKVCache and every other policy in a plain KVCache', () => {
    const masked = createCache(model.kernels, model.config, parseSpec('scissorhands(mode=reference)'), 16);
    const plain = createCache(model.kernels, model.config, parseSpec('scissorhands(budget=8)'), 16);
    expect(masked).toBeInstanceOf(MaskedKVCache);
    expect(plain).toBeInstanceOf(KVCache);
    expect(plain).not.toBeInstanceOf(MaskedKVCache);
    masked.free();
    plain.free();
  });
});

describe('a quantized codec on narrow heads', () => {
  afterEach(() => vi.restoreAllMocks());

  it('warns once that it stores more than fp16 (stories260K: head_dim 8)', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const model = await loadModel(STORIES_BIN, { threads: 1 });
    try {
      expect(model.config.headDim).toBe(8);
      const parts = buildCache(model.kernels, model.config, parseSpec('full+kvquant(bits=4)'), 16);
      expect(parts.codec.bitsPerValue()).toBeGreaterThan(16);
      parts.codec.free();
      buildCache(model.kernels, model.config, parseSpec('full+fp16'), 16).codec.free();
      const warnings = stderr.mock.calls.map((c) => String(c[0])).filter((t) => t.includes('warning'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/kvquant stores \d+\.\d bits per value on this model's 8-wide heads.*more than fp16/);
    } finally {
      await model.close();
    }
  });
});
