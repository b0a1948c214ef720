import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/engine/model.js';
import { predictedPeakBytes, SpecCost } from '../../src/server/memory.js';
import { REF6M_DIR, withModel } from '../engine/helpers.js';

let model: Model;
withModel(REF6M_DIR, (m) => (model = m));

describe('the worst case a request may reserve', () => {
  const prompt = model0Prompt();
  it.each([
    'full+fp16',
    'full',
    'h2o(budget=0.2)+kvquant(bits=3)',
    'h2o(budget=32,recent=8)+fp16',
    'scissorhands(budget=40)+int(bits=4)', 'full+int(bits=2,kaxis=channel,group=32,residual=16)',
    'snapkv(budget=24)+fp16',
    'window(sinks=4,recent=20)+int(bits=2,group=32)',
    'scissorhands(mode=reference,layers=1,start=8)+fp16', // state sized on first use
  ])('bounds the bytes %s really holds while it prefills and decodes', async (spec) => {
    const session = model.session({ cache: spec, chunkSize: 16 });
    session.cache.setPromptLength(prompt.length);
    const predicted = predictedPeakBytes(session.cache, prompt.length, 40);
    // worked out without a session, the same bound
    expect(new SpecCost(model, spec).demand(prompt.length, 40).held).toBe(predicted);
    for await (const _ of session.generate(prompt, { maxTokens: 40, temperature: 0 })) void _;
    expect(session.tokens.length).toBe(prompt.length + 40); // no end of sequence: every token was fed
    const real = session.cache.peakBytes();
    expect(real).toBeLessThanOrEqual(predicted);
    if (spec === 'full' || spec === 'full+fp16') expect(real).toBe(predicted); // float storage, nothing evicted: the bound is exact
    else expect(real).toBeGreaterThan(predicted * 0.9);
    session.dispose();
  });
});

describe('KVzip, whose reconstruction holds what the cache holds twice over for a while', () => {
  it('is bounded by what it holds with every token fed again after its prompt', async () => {
    const prompt = model0Prompt();
    const spec = 'kvzip(budget=24,every=8)';
    const session = model.session({ cache: spec, chunkSize: 16 });
    session.cache.setPromptLength(prompt.length);
    const predicted = predictedPeakBytes(session.cache, prompt.length, 40);
    expect(new SpecCost(model, spec).demand(prompt.length, 40).held).toBe(predicted);
    for await (const _ of session.generate(prompt, { maxTokens: 40, temperature: 0 })) void _;
    const real = session.cache.peakBytes();
    // the first pass holds the whole prompt and its repeat: more than the prompt alone
    expect(real).toBeGreaterThan(predictedPeakBytes(model.session({ cache: 'full' }).cache, prompt.length, 0));
    expect(real).toBeLessThanOrEqual(predicted);
    session.dispose();
  });
});

/** 120 plain tokens (no end of sequence among them, none generated in 40 greedy steps of ref-6m). */
function model0Prompt(): number[] {
  return Array.from({ length: 120 }, (_, i) => 100 + ((i * 37) % 3000));
}
