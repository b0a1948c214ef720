import { getLlama, LlamaLogLevel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../src/engine/model.js';
import { greedyTokens, REF6M_DIR, REF6M_GGUF } from './helpers.js';

const PROMPT = 'The President of the United States said that the Congress';

describe('ref-6m: HF directory, GGUF and llama.cpp agree', () => {
  let hf: Model;
  let gguf: Model;
  beforeAll(async () => {
    hf = await loadModel(REF6M_DIR, { threads: 2 });
    gguf = await loadModel(REF6M_GGUF, { threads: 2 });
  });
  afterAll(async () => {
    await hf.close();
    await gguf.close();
  });

  it('both formats tokenize the prompt the same way', () => {
    expect(gguf.tokenizer.encode(PROMPT)).toEqual(hf.tokenizer.encode(PROMPT));
  });

  it('gives the same logits at every position (max abs diff < 1e-4)', () => {
    const ids = hf.tokenizer.encode(PROMPT);
    const rows: Float32Array[][] = [[], []];
    [hf, gguf].forEach((m, i) => {
      m.session().score([...ids, 0], { onLogits: (_, l) => rows[i]!.push(l.slice()) });
    });
    expect(rows[0]!.length).toBe(ids.length);
    let maxDiff = 0;
    for (let t = 0; t < ids.length; t++) {
      const a = rows[0]![t]!;
      const b = rows[1]![t]!;
      for (let v = 0; v < a.length; v++) maxDiff = Math.max(maxDiff, Math.abs(a[v]! - b[v]!));
    }
    expect(maxDiff).toBeLessThan(1e-4);
  });

  it('greedy generation matches llama.cpp token for token for 32 tokens', async () => {
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    const lmodel = await llama.loadModel({ modelPath: REF6M_GGUF });
    const context = await lmodel.createContext({ contextSize: 256, threads: 1 });
    const promptIds = [...lmodel.tokenize(PROMPT)].map(Number);
    const expected: number[] = [];
    for await (const t of context.getSequence().evaluate(promptIds, { temperature: 0 })) {
      expected.push(Number(t));
      if (expected.length === 32) break;
    }
    await context.dispose();
    await lmodel.dispose();
    await llama.dispose();

    for (const m of [hf, gguf]) {
      expect(m.tokenizer.encode(PROMPT)).toEqual(promptIds);
      expect(greedyTokens(m.session(), promptIds, 32)).toEqual(expected);
    }
  });

  it('chunked prefill and one-token-at-a-time decoding give the same log-probabilities', () => {
    const ids = hf.tokenizer.encode(`${PROMPT} ${PROMPT.toLowerCase()} and the people.`);
    const chunked = hf.session({ chunkSize: 5 }).score(ids);
    const decode = hf.session().score(ids, { mode: 'decode' });
    for (let i = 0; i < chunked.length; i++) expect(Math.abs(chunked[i]! - decode[i]!)).toBeLessThan(1e-4);
  });
});
