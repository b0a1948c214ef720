import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/engine/model.js';
import { STORIES_BIN, withModel } from './helpers.js';

describe('session.lastTimings', () => {
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  it("counts the prompt's tokens and the generated ones apart, each with its own time, and follows every generate()", async () => {
    const session = model.session();
    expect(session.lastTimings).toBeUndefined();
    for await (const _ of session.generate('Once upon a time', { maxTokens: 12, temperature: 0 }));
    const first = session.lastTimings!;
    expect(first.promptTokens).toBe(model.tokenizer.encode('Once upon a time').length);
    expect(first.generatedTokens).toBe(12);
    expect(session.tokens.length).toBe(first.promptTokens + first.generatedTokens);
    expect(first.promptMs).toBeGreaterThan(0);
    expect(first.generationMs).toBeGreaterThan(0);
    // a second turn on the same session: its own prompt, not the history
    for await (const _ of session.generate(' The end.', { maxTokens: 3, temperature: 0 }));
    expect(session.lastTimings).not.toBe(first);
    expect(session.lastTimings!.promptTokens).toBe(model.tokenizer.encode(' The end.', { addBos: false }).length);
    expect(session.lastTimings!.generatedTokens).toBe(3);
  });
});
