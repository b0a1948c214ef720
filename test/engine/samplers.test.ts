import { describe, expect, it } from 'vitest';
import { Sampler, type SamplingOptions } from '../../src/engine/sample.js';

// Each sampler of the chain against its definition, on distributions small enough to work out by hand.
const softmax = (xs: number[]) => {
  const max = Math.max(...xs);
  const e = xs.map((x) => Math.exp(x - max));
  const z = e.reduce((a, b) => a + b);
  return e.map((x) => x / z);
};
const dist = (logits: number[], o: Partial<SamplingOptions>, history: number[] = []) => {
  const s = new Sampler(logits.length, { temperature: 1, topP: 1, seed: 1, ...o });
  s.accept(history);
  return [...s.distribution(logits)];
};
const expectClose = (got: number[], want: number[]) => {
  expect(got).toHaveLength(want.length);
  got.forEach((g, i) => expect(g, `token ${i}: ${got.join(', ')} vs ${want.join(', ')}`).toBeCloseTo(want[i]!, 12));
};
const P = [0.4, 0.3, 0.2, 0.1];
const LOGITS = P.map(Math.log);

describe('the sampler chain, one sampler at a time', () => {
  it('top-k keeps the k largest logits and renormalizes them', () => {
    const logits = [1, 4, 2, 3, 0];
    expectClose(dist(logits, { topK: 2 }), [0, ...softmax([4, 3]).slice(0, 1), 0, softmax([4, 3])[1]!, 0]);
    expectClose(dist(logits, { topK: 0 }), softmax(logits)); // 0: every token
    expectClose(dist(logits, { topK: 9 }), softmax(logits));
  });

  it('min-p keeps the tokens at least minP times as likely as the most likely', () => {
    // p_max 0.4: minP 0.5 keeps p ≥ 0.2, so 0.4, 0.3, 0.2 out of 0.9
    expectClose(dist(LOGITS, { minP: 0.5 }), [0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9, 0]);
    expectClose(dist(LOGITS, { minP: 1 }), [1, 0, 0, 0]);
  });

  it('top-p keeps the fewest most likely tokens whose mass reaches p', () => {
    expectClose(dist(LOGITS, { topP: 0.69 }), [0.4 / 0.7, 0.3 / 0.7, 0, 0]);
    expectClose(dist(LOGITS, { topP: 0.71 }), [0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9, 0]);
    expectClose(dist(LOGITS, { topP: 0 }), [1, 0, 0, 0]);
  });

  it('temperature divides the logits of what is left', () => {
    expectClose(dist(LOGITS, { temperature: 2 }), softmax(LOGITS.map((l) => l / 2)));
    expectClose(dist(LOGITS, { temperature: 0 }), [1, 0, 0, 0]);
  });

  it('the repetition penalty divides a positive logit and multiplies a negative one (CTRL, as llama.cpp applies it)', () => {
    const logits = [2, -1, 0.5, 1];
    // tokens 0 and 1 are in the history, 1 twice: the repetition penalty counts presence, not occurrences
    expectClose(dist(logits, { repeatPenalty: 2 }, [0, 1, 1]), softmax([1, -2, 0.5, 1]));
    expectClose(dist(logits, { repeatPenalty: 0.5 }, [0, 1]), softmax([4, -0.5, 0.5, 1]));
  });

  it('presence and frequency penalties subtract per token present and per occurrence (OpenAI\'s definition)', () => {
    const logits = [3, 1, 2, 0];
    // mu[j] - c[j]·frequency - [c[j] > 0]·presence, with c = {0: 2, 2: 1}
    expectClose(dist(logits, { frequencyPenalty: 0.5, presencePenalty: 0.25 }, [0, 0, 2]), softmax([3 - 1 - 0.25, 1, 2 - 0.5 - 0.25, 0]));
    expectClose(dist(logits, { frequencyPenalty: -1 }, [3]), softmax([3, 1, 2, 1]));
  });

  it('the penalties look back repeatLastN tokens: -1 all of them, 0 none', () => {
    const logits = [1, 1, 1, 1];
    const history = [0, 1, 2];
    expectClose(dist(logits, { presencePenalty: 1, repeatLastN: 1 }, history), softmax([1, 1, 0, 1]));
    expectClose(dist(logits, { presencePenalty: 1, repeatLastN: -1 }, history), softmax([0, 0, 0, 1]));
    expectClose(dist(logits, { presencePenalty: 1, repeatLastN: 0 }, history), softmax(logits));
  });
});

describe("the chain's order: penalties → top-k → top-p → min-p → temperature", () => {
  it('top-p renormalizes over what top-k kept', () => {
    // top-k 2 leaves 0.4 and 0.3, i.e. 4/7 and 3/7: 4/7 alone reaches p = 0.5 (over all four, 0.4 would not)
    expectClose(dist(LOGITS, { topK: 2, topP: 0.5 }), [1, 0, 0, 0]);
  });

  it('top-p and min-p see the distribution before the temperature (llama.cpp\'s order, not Hugging Face\'s)', () => {
    // at temperature 2 the probabilities flatten to 0.38, 0.29, 0.21, 0.12, and p = 0.69 would keep three
    const t2 = softmax(LOGITS.slice(0, 2).map((l) => l / 2));
    expectClose(dist(LOGITS, { topP: 0.69, temperature: 2 }), [t2[0]!, t2[1]!, 0, 0]);
    // min-p 0.6 keeps p ≥ 0.24 of the untempered 0.4, 0.3, 0.2, 0.1: two tokens (at temperature 3 the last three would pass)
    const t3 = softmax(LOGITS.slice(0, 2).map((l) => l / 3));
    expectClose(dist(LOGITS, { minP: 0.6, temperature: 3 }), [t3[0]!, t3[1]!, 0, 0]);
  });

  it('penalties come first: a penalized token can fall out of top-k, and greedy picks the penalized argmax', () => {
    expectClose(dist([5, 4, 3], { topK: 1, repeatPenalty: 2 }, [0]), [0, 1, 0]);
    expectClose(dist([5, 4, 3], { temperature: 0, presencePenalty: 2 }, [0, 1]), [1, 0, 0]); // 3, 2, 3: the first on a tie
    expectClose(dist([5, 4, 3], { temperature: 0, presencePenalty: 2, frequencyPenalty: 0.5 }, [0, 1]), [0, 0, 1]);
  });

  it('sample() draws from distribution() and adds what it draws to the history', () => {
    const logits = [2, 1.5, 1, 0.5, 0, -3];
    const options = { temperature: 0.7, topK: 4, topP: 0.9, minP: 0.2, seed: 5 };
    const want = dist(logits, options);
    const s = new Sampler(logits.length, { ...options, topP: 0.9 });
    const counts = new Array<number>(logits.length).fill(0);
    const n = 40_000;
    for (let i = 0; i < n; i++) counts[s.sample(logits)]!++;
    counts.forEach((c, i) => expect(c / n, `token ${i}`).toBeCloseTo(want[i]!, 2));
    expect(want.filter((p) => p > 0).length).toBeGreaterThan(1);
    // with a presence penalty that rules out what was just drawn, greedy never repeats a token
    const greedy = new Sampler(3, { temperature: 0, topP: 1, seed: 0, presencePenalty: 2, repeatLastN: 1 });
    expect([greedy.sample([1, 0.5, 0]), greedy.sample([1, 0.5, 0]), greedy.sample([1, 0.5, 0])]).toEqual([0, 1, 0]);
  });
});
