import { describe, expect, it } from 'vitest';
import { fidelity } from '../../src/eval/fidelity.js';
import { needle, needlePrompt, needleSentence } from '../../src/eval/needle.js';
import { passkey, passkeyLine, passkeyPrompt } from '../../src/eval/passkey.js';
import { firstInteger, parseIntList } from '../../src/eval/retrieval.js';
import { resolveTask } from '../../src/eval/tasks.js';
import { xsum } from '../../src/eval/xsum.js';
import type { Model } from '../../src/engine/model.js';
import { REF6M_DIR, STORIES_BIN, withModel } from '../engine/helpers.js';

describe('eval tasks on stories260K', () => {
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  it('fidelity: the exact (f32) full cache against itself is exact; eviction costs KL and agreement; fp16 almost nothing', () => {
    const o = { data: 'stories260k', ctx: 256, chunks: 1, mode: 'decode' as const };
    const same = fidelity(model, { ...o, cache: 'full+fp32' });
    expect(same.kl).toBe(0);
    expect(same.top1).toBe(1);
    expect(same.ppl).toBeCloseTo(same.ppl_full, 10);
    expect(same.tokens).toBe(255);
    const fp16 = fidelity(model, { ...o, cache: 'full' }); // the default codec, fp16
    const window = fidelity(model, { ...o, cache: 'window(sinks=2,recent=16)+fp32' });
    expect(fp16.kl).toBeGreaterThan(0);
    expect(fp16.kl).toBeLessThan(1e-3);
    expect(window.kl).toBeGreaterThan(50 * fp16.kl);
    expect(window.top1).toBeLessThan(1);
    expect(window.kl_max).toBeGreaterThanOrEqual(window.kl);
    expect(window.ppl_full).toBeCloseTo(same.ppl_full, 10); // the remembered full run is the same run
    expect(window.memory.compression).toBeGreaterThan(3);
  });

  it('passkey: the key line sits at the asked depth of the filler, within the asked length', () => {
    const text = (depth: number) => model.tokenizer.decode(passkeyPrompt(model, 400, depth, 4242));
    for (const depth of [0, 50, 100]) {
      const ids = passkeyPrompt(model, 400, depth, 4242);
      expect(ids.length).toBeLessThanOrEqual(400);
      expect(ids.length).toBeGreaterThan(350);
    }
    const where = (depth: number) => text(depth).indexOf(passkeyLine(4242)) / text(depth).length;
    expect(where(0)).toBeLessThan(where(50));
    expect(where(50)).toBeLessThan(where(100));
    expect(text(100).trimEnd().endsWith('What is the pass key? The pass key is')).toBe(true);
  });

  it('needle: exactly the asked length, the needle inside', () => {
    for (const depth of [0, 25, 100]) {
      const ids = needlePrompt(model, 300, depth, 'river', 1234567);
      expect(ids.length).toBe(300);
      expect(model.tokenizer.decode(ids)).toContain(needleSentence('river', 1234567));
    }
  });

  it('grid tasks report every cell and the cache memory', async () => {
    const r = await passkey(model, { cache: 'h2o(budget=0.5)', lengths: [200, 260], depths: [0, 100], trials: 1, seed: 1 });
    expect(Object.keys(r.cells).sort()).toEqual(['acc_L200_d0', 'acc_L200_d100', 'acc_L260_d0', 'acc_L260_d100']);
    expect(r.accuracy).toBeGreaterThanOrEqual(0);
    expect(r.memory.kv_bytes_peak).toBeGreaterThan(0);
    const n = await needle(model, { cache: 'full', lengths: [300], depths: [50], trials: 1, seed: 1 });
    expect(n.memory.compression).toBeCloseTo(1, 1);
    await expect(passkey(model, { cache: 'full', lengths: [600], depths: [0], trials: 1, seed: 1 })).rejects.toThrow(/exceeds the model's context of 512/);
  });

  it('passkey reports what the cache holds after the prompt is compressed, and the transient peak apart', async () => {
    const r = await passkey(model, { cache: 'window(sinks=4,recent=0.2)', lengths: [300], depths: [50], trials: 1, seed: 1 });
    const m = r.memory;
    // the prompt is in the cache whole for one step (the peak); then 4 sinks + a fifth of it stay
    expect(m.compression).toBeGreaterThan(3);
    expect(m.kv_bytes_held!).toBeLessThan(m.kv_bytes_peak / 3);
  });

  it('xsum: generates with the item settings and scores ROUGE in [0, 1], skipping prompts too long for the context', async () => {
    const summaries: string[] = [];
    const r = await xsum(model, { cache: 'full', items: 1, seed: 0, onSummary: (_, s) => summaries.push(s) });
    expect(r.items).toBe(1);
    expect(r.skipped).toBeGreaterThan(0); // stories260K's 512 tokens cannot hold the first article
    expect(summaries[0]).not.toContain('###');
    for (const v of [r.rouge1, r.rouge2, r.rougeL]) expect(v >= 0 && v <= 1).toBe(true);
  });
});

describe('task parameters', () => {
  it('checks grid lists before anything runs', () => {
    expect(parseIntList('256, 512,1024', 'lengths', 16)).toEqual([256, 512, 1024]);
    expect(() => resolveTask({ task: 'passkey', depths: '0,150' }, 'plan')).toThrow(/depths must be a comma-separated list of integers in \[0, 100\]/);
    expect(() => resolveTask({ task: 'needle', lengths: '512,,1024' }, 'plan')).toThrow(/lengths/);
    expect(resolveTask({ task: 'fidelity' }, 'plan').params).toEqual({ data: 'wikitext2', chunks: 1, mode: 'decode' }); // ctx: the model's context, known once it loads
    expect(resolveTask({ task: 'fidelity', ctx: 256 }, 'plan').params).toEqual({ data: 'wikitext2', ctx: 256, chunks: 1, mode: 'decode' });
    expect(resolveTask({ task: 'xsum', items: 5 }, 'plan').params).toEqual({ items: 5, stemmer: 'porter' });
  });

  it('reads the first integer of an answer', () => {
    expect(firstInteger(' 31415. Remember')).toBe('31415');
    expect(firstInteger('no digits')).toBeUndefined();
  });
});

describe('eval tasks on ref-6m (quantized rows smaller than f16 there)', () => {
  let model: Model;
  withModel(REF6M_DIR, (m) => (model = m));

  it('kvquant without a calibration file: the held maximum is set while it stages f16 rows; the steady state and a note say so', () => {
    const o = { data: 'wikitext2', ctx: 256, chunks: 1, mode: 'decode' as const };
    const staged = fidelity(model, { ...o, cache: 'h2o(budget=0.2)+kvquant(bits=3)' }).memory;
    expect(staged.note).toMatch(/^kvquant: no calibration file, so each layer kept its first 64 tokens as f16 rows/);
    expect(staged.kv_bytes_end!).toBeLessThan(staged.kv_bytes_held! * 0.75);
    const f16 = fidelity(model, { ...o, cache: 'h2o(budget=0.2)' }).memory;
    expect(f16.note).toBeUndefined();
    expect(f16.kv_bytes_end).toBe(f16.kv_bytes_held); // a budget held from the first eviction on
  });
});
