import { getLlama, LlamaLogLevel } from 'node-llama-cpp';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/engine/model.js';
import { REF6M_GGUF } from './helpers.js';

const PROMPT = 'The President of the United States said that the Congress';
const PENALTIES = { penalty: 1.5, frequencyPenalty: 0.3, presencePenalty: 0.2 };

/** llama.cpp's greedy tokens after PROMPT, with its penalties sampler over the last 64 tokens (prompt included) when `penalties`. */
async function llamaCppGreedy(steps: number, penalties: boolean): Promise<{ prompt: number[]; tokens: number[] }> {
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: REF6M_GGUF });
  const context = await model.createContext({ contextSize: 256, threads: 1 });
  try {
    const prompt = [...model.tokenize(PROMPT)];
    const history = [...prompt];
    const tokens: number[] = [];
    const repeatPenalty = penalties ? { ...PENALTIES, punishTokens: () => history.slice(-64) } : undefined;
    for await (const t of context.getSequence().evaluate(prompt, { temperature: 0, repeatPenalty })) {
      history.push(t);
      tokens.push(Number(t));
      if (tokens.length === steps) break;
    }
    return { prompt: prompt.map(Number), tokens };
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}

describe('penalties against llama.cpp', () => {
  it("greedy decoding with repetition, frequency and presence penalties picks llama.cpp's tokens", async () => {
    const plain = await llamaCppGreedy(40, false);
    const penalized = await llamaCppGreedy(40, true);
    // the penalties matter here: ref-6m loops without them, and llama.cpp's text changes
    expect(penalized.tokens).not.toEqual(plain.tokens);
    const model = await loadModel(REF6M_GGUF, { threads: 2 });
    try {
      const generate = async (options: object) => {
        const session = model.session();
        for await (const _ of session.generate(penalized.prompt, { maxTokens: 40, temperature: 0, ...options }));
        return session.tokens.slice(penalized.prompt.length);
      };
      expect(await generate({})).toEqual(plain.tokens);
      const { penalty: repeatPenalty, frequencyPenalty, presencePenalty } = PENALTIES;
      expect(await generate({ repeatPenalty, frequencyPenalty, presencePenalty, repeatLastN: 64 })).toEqual(penalized.tokens);
    } finally {
      await model.close();
    }
  });
});
