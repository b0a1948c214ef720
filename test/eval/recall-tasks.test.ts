import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyItems, copyNll } from '../../src/eval/copy.js';
import { loadEvalTokens } from '../../src/eval/data.js';
import { multikey, multikeyLine, multikeyPrompt, multikeyQuestion, multikeyTrial } from '../../src/eval/multikey.js';
import { resolveTask } from '../../src/eval/tasks.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { STORIES_BIN } from '../engine/helpers.js';

describe('multikey and copy on stories260K', () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(STORIES_BIN, { threads: 1 });
  });
  afterAll(async () => model.close());

  it('multikey: the asked length, every pair line in depth order, the question last', () => {
    const pairs = [
      { key: 'amber-canyon', value: 1234567 },
      { key: 'bold-ember', value: 7654321 },
      { key: 'calm-forest', value: 5555555 },
    ];
    const ids = multikeyPrompt(model, 400, pairs, [90, 10, 50], 'bold-ember');
    expect(ids.length).toBe(400);
    const text = model.tokenizer.decode(ids);
    const at = pairs.map((p) => text.indexOf(multikeyLine(p).trim()));
    expect(at.every((i) => i > 0)).toBe(true);
    expect(at[1]!).toBeLessThan(at[2]!);
    expect(at[2]!).toBeLessThan(at[0]!);
    expect(text.trimEnd().endsWith(multikeyQuestion('bold-ember').trim())).toBe(true);
  });

  it('multikey scores the asked value right and a distractor value wrong', () => {
    const t = multikeyTrial(model, 3, 8, 450, 50, 0);
    expect(new Set(t.pairs.map((p) => p.key)).size).toBe(8);
    const [asked, other] = t.pairs;
    expect(t.check(` ${asked!.value}.`)).toBe(true);
    expect(t.check(` ${other!.value}.`)).toBe(false);
    expect(model.tokenizer.decode(t.prompt).trimEnd().endsWith(multikeyQuestion(asked!.key).trim())).toBe(true);
    // deterministic per (seed, length, depth, trial)
    expect(multikeyTrial(model, 3, 8, 450, 50, 0).prompt).toEqual(t.prompt);
    expect(multikeyTrial(model, 3, 8, 450, 50, 1).pairs).not.toEqual(t.pairs);
  });

  it('multikey runs as a grid, and refuses prompts with no room for the haystack', async () => {
    const r = await multikey(model, { cache: 'full', lengths: [300], depths: [0, 100], trials: 1, seed: 1, pairs: 4 });
    expect(Object.keys(r.cells).sort()).toEqual(['acc_L300_d0', 'acc_L300_d100']);
    await expect(multikey(model, { cache: 'full', lengths: [40], depths: [0], trials: 1, seed: 1, pairs: 8 })).rejects.toThrow(/leaves no room for the haystack/);
  });

  it('copy: items are text, span, text, the same span', () => {
    const ids = Array.from({ length: 40 }, (_, i) => i);
    expect(copyItems(ids, 3, 2, 2)).toEqual([
      [0, 1, 2, 3, 4, 5, 6, 2, 3, 4],
      [7, 8, 9, 10, 11, 12, 13, 9, 10, 11],
    ]);
    expect(() => copyItems(ids, 10, 10, 2)).toThrow(/copy needs 60 tokens of text/);
  });

  it('copy: the NLL of each occurrence is the mean over its tokens after the first', () => {
    const o = { data: 'stories260k', span: 16, gap: 32, items: 2, cache: 'full' };
    const r = copyNll(model, o);
    const stream = model.session({ cache: 'full' });
    let first = 0;
    let second = 0;
    // the same items, scored here position by position
    const tokens = loadEvalTokens('stories260k', model.tokenizer);
    const docs = copyItems(tokens.kind === 'documents' ? tokens.docs.flat() : tokens.ids, 16, 32, 2);
    for (const item of docs) {
      stream.reset();
      const lp = stream.score(item);
      for (let t = 33; t < 48; t++) first -= lp[t - 1]!;
      for (let t = 81; t < 96; t++) second -= lp[t - 1]!;
    }
    stream.dispose();
    expect(r.nll_first).toBeCloseTo(first / 30, 9);
    expect(r.nll_second).toBeCloseTo(second / 30, 9);
    expect(r.ratio).toBeCloseTo(second / first, 9);
    // one token at a time: the same numbers with the full cache; eviction acts with a window
    expect(copyNll(model, { ...o, mode: 'decode' }).ratio).toBeCloseTo(r.ratio, 4);
    const window = copyNll(model, { ...o, mode: 'decode', cache: 'window(sinks=0,recent=8)' });
    expect(Math.abs(window.nll_second - r.nll_second)).toBeGreaterThan(0.01);
    expect(() => copyNll(model, { ...o, gap: 300 })).toThrow(/exceed the model's context of 512/);
  });

  it('copy and multikey are tasks with checked parameters', () => {
    expect(resolveTask({ task: 'copy' }, 'plan').params).toEqual({ data: 'wikitext2', span: 64, gap: 256, items: 20, mode: 'chunked' });
    expect(resolveTask({ task: 'multikey' }, 'plan').params).toEqual({ lengths: '512,1024,1900', depths: '0,25,50,75,100', trials: 2, pairs: 8 });
    expect(() => resolveTask({ task: 'multikey', pairs: 0 }, 'plan')).toThrow(/pairs/);
    expect(() => resolveTask({ task: 'copy', span: 1 }, 'plan')).toThrow(/span/);
  });
});
