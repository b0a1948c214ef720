import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type OpenAI from 'openai';
import { logSoftmax } from '../../src/engine/sample.js';
import type { GenerateOptions } from '../../src/engine/session.js';
import { STORIES_BIN } from '../engine/helpers.js';
import { startServer, type TestServer } from './helpers.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer(STORIES_BIN);
});
afterAll(() => server.close());

const MODEL = 'stories260K';
const PROMPT = 'Once upon a time';
const CHAT_PROMPT = 'user: Tell me a story.\nassistant:'; // the default template's rendering of one user message

/** A completion with fields the client's types do not list (kvpack's and llama-server's samplers). */
async function complete(body: Record<string, unknown>): Promise<OpenAI.Completion> {
  return server.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 48, ...body } as never);
}

async function text(body: Record<string, unknown>): Promise<string> {
  return (await complete(body)).choices[0]!.text;
}

/** The library's own generation with the same options. */
async function library(prompt: string, maxTokens: number, options: GenerateOptions): Promise<string> {
  const session = server.model.session({ cache: 'full' });
  let out = '';
  for await (const piece of session.generate(prompt, { maxTokens, ...options })) out += piece;
  session.dispose();
  return out;
}

/** Words that already appeared earlier in the text. */
function repeats(s: string): number {
  const words = s.split(/\s+/).filter(Boolean);
  return words.length - new Set(words).size;
}

describe('kvpack serve: samplers', () => {
  it('top_k 1 and min_p 1 keep only the most likely token: sampling at any temperature is greedy', async () => {
    const greedy = await text({ temperature: 0 });
    const sampled = { temperature: 1.5, seed: 3 };
    expect(await text(sampled)).not.toBe(greedy); // without the filter this seed wanders off
    expect(await text({ ...sampled, top_k: 1 })).toBe(greedy);
    expect(await text({ ...sampled, min_p: 1 })).toBe(greedy);
  });

  it('samples with top_k, min_p and a seed as the library does, and the same seed gives the same text', async () => {
    const body = { temperature: 0.9, seed: 11, top_k: 8, min_p: 0.05, top_p: 0.95 };
    const a = await text(body);
    expect(a).toBe(await library(PROMPT, 48, { temperature: 0.9, seed: 11, topK: 8, minP: 0.05, topP: 0.95 }));
    expect(await text(body)).toBe(a);
    expect(await text({ ...body, top_k: 0 })).not.toBe(a); // the filter changed the draws
  });

  it('a large repetition penalty lowers repeats, as the library applies it, under either name', async () => {
    const plain = await text({ temperature: 0 });
    const penalized = await text({ temperature: 0, repeat_penalty: 3, repeat_last_n: -1 });
    expect(repeats(penalized)).toBeLessThan(repeats(plain));
    expect(penalized).toBe(await library(PROMPT, 48, { temperature: 0, repeatPenalty: 3, repeatLastN: -1 }));
    expect(await text({ temperature: 0, repetition_penalty: 3, repeat_last_n: -1 })).toBe(penalized);
    // repeat_last_n 0 looks back on nothing: no penalty
    expect(await text({ temperature: 0, repeat_penalty: 3, repeat_last_n: 0 })).toBe(plain);
  });

  it('presence and frequency penalties are OpenAI\'s, as the library applies them', async () => {
    const plain = await text({ temperature: 0 });
    const presence = await text({ temperature: 0, presence_penalty: 2 });
    const frequency = await text({ temperature: 0, frequency_penalty: 2 });
    expect(repeats(presence)).toBeLessThan(repeats(plain));
    expect(repeats(frequency)).toBeLessThan(repeats(plain));
    expect(presence).toBe(await library(PROMPT, 48, { temperature: 0, presencePenalty: 2 }));
    expect(frequency).toBe(await library(PROMPT, 48, { temperature: 0, frequencyPenalty: 2 }));
  });

  it('the chat endpoint takes the same samplers', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
    const r = await server.client.chat.completions.create({ model: MODEL, messages, max_tokens: 32, temperature: 0, frequency_penalty: 1.5, top_k: 1 } as never);
    expect((r as OpenAI.ChatCompletion).choices[0]!.message.content).toBe(await library(CHAT_PROMPT, 32, { temperature: 0, frequencyPenalty: 1.5, topK: 1 }));
  });

  it('refuses values outside the library\'s ranges, naming the field', async () => {
    for (const [field, value] of [['top_k', -1], ['min_p', 1.5], ['repeat_penalty', 0], ['repetition_penalty', -1], ['repeat_last_n', -2],
      ['presence_penalty', 2.5], ['frequency_penalty', -3], ['temperature', 101], ['top_p', 1.1], ['top_k', 1.5]] as const) {
      await expect(complete({ [field]: value }), `${field}: ${value}`).rejects.toMatchObject({ status: 400, code: 'invalid_value', param: field });
    }
    await expect(complete({ repeat_penalty: 1.1, repetition_penalty: 1.3 })).rejects.toMatchObject({ status: 400, param: 'repetition_penalty' });
  });
});

/** The top `n` of a log-softmax row, most likely first. */
function topOf(row: Float64Array, n: number): number[] {
  return [...row].sort((a, b) => b - a).slice(0, n);
}

/**
 * The library's log-softmax at each greedy step after `prompt`: the chosen token's logprob and the
 * `n` largest, with the chosen token's id.
 */
function libraryLogprobs(prompt: string, steps: number, n: number) {
  const tokenizer = server.model.tokenizer;
  const session = server.model.session({ cache: 'full' });
  let logits = session.feed(tokenizer.encode(prompt, { addBos: tokenizer.addBosByDefault }));
  const out: { id: number; logprob: number; top: number[] }[] = [];
  for (let i = 0; i < steps; i++) {
    const row = logSoftmax(logits);
    const id = row.indexOf(Math.max(...row));
    out.push({ id, logprob: row[id]!, top: topOf(row, n) });
    logits = session.feed([id]);
  }
  session.dispose();
  return out;
}

/** Equal up to the f32 rounding a batched step may differ by (docs/serve.md, Scheduling). */
const close = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThan(1e-4);

describe('kvpack serve: logprobs', () => {
  it('completions: logprobs N gives each token\'s log-softmax and the N most likely, as the library computes them', async () => {
    const r = await complete({ max_tokens: 12, temperature: 0, logprobs: 5 });
    const lp = r.choices[0]!.logprobs!;
    const expected = libraryLogprobs(PROMPT, 12, 5);
    expect(lp.tokens).toHaveLength(12);
    expect(lp.tokens!.join('')).toBe(r.choices[0]!.text);
    expect(lp.text_offset).toEqual(lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join('').length));
    for (const [i, e] of expected.entries()) {
      close(lp.token_logprobs![i]!, e.logprob);
      const top = Object.values(lp.top_logprobs![i]!);
      expect(top.length).toBeLessThanOrEqual(5); // two tokens may read the same
      for (const [k, v] of top.entries()) close(v, e.top[k]!);
      expect(lp.top_logprobs![i]![lp.tokens![i]!]).toBe(lp.token_logprobs![i]); // greedy: the chosen one is the most likely
    }
    // each token's text is what it adds to the running text
    const tokenizer = server.model.tokenizer;
    const prompt = tokenizer.encode(PROMPT, { addBos: tokenizer.addBosByDefault });
    const ids = expected.map((e) => e.id);
    for (let i = 0; i < ids.length; i++) {
      expect(lp.tokens!.slice(0, i + 1).join('')).toBe(tokenizer.decode([...prompt, ...ids.slice(0, i + 1)]).slice(tokenizer.decode(prompt).length));
    }
  });

  it('completions: a stream carries the same logprobs, each token on the chunk with its text', async () => {
    const whole = (await complete({ max_tokens: 12, temperature: 0, logprobs: 2 })).choices[0]!.logprobs!;
    const stream = await server.client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 12, temperature: 0, logprobs: 2, stream: true });
    const got = { tokens: [] as string[], token_logprobs: [] as number[], top_logprobs: [] as unknown[], text_offset: [] as number[] };
    for await (const chunk of stream) {
      const lp = chunk.choices[0]?.logprobs;
      if (!lp) continue;
      expect(lp.tokens!.join('')).toBe(chunk.choices[0]!.text);
      for (const key of Object.keys(got) as (keyof typeof got)[]) (got[key] as unknown[]).push(...(lp[key] as unknown[]));
    }
    expect(got).toEqual(whole);
  });

  it('lists every token usage counts, a stop string\'s among them, streaming and not', async () => {
    const full = await text({ max_tokens: 24, temperature: 0 });
    const stop = full.slice(12, 16);
    const body = { max_tokens: 24, temperature: 0, logprobs: 1, stop: [stop] };
    const r = await complete(body);
    expect(r.choices[0]!.finish_reason).toBe('stop');
    const lp = r.choices[0]!.logprobs!;
    expect(lp.token_logprobs).toHaveLength(r.usage!.completion_tokens);
    expect(lp.tokens!.join('').startsWith(r.choices[0]!.text + stop)).toBe(true);
    const stream = await server.client.completions.create({ model: MODEL, prompt: PROMPT, ...body, stream: true });
    const streamed: string[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.tokens ?? []));
    expect(streamed).toEqual(lp.tokens);
  });

  it('chat: logprobs true and top_logprobs in OpenAI\'s shape, streaming and not, as the library computes them', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
    const body = { model: MODEL, messages, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 3 };
    const r = await server.client.chat.completions.create(body);
    const content = r.choices[0]!.logprobs!.content!;
    const expected = libraryLogprobs(CHAT_PROMPT, 10, 3);
    expect(content.map((t) => t.token).join('')).toBe(r.choices[0]!.message.content);
    for (const [i, e] of expected.entries()) {
      close(content[i]!.logprob, e.logprob);
      expect(content[i]!.bytes).toEqual([...Buffer.from(content[i]!.token, 'utf8')]);
      expect(content[i]!.top_logprobs).toHaveLength(3);
      for (const [k, alt] of content[i]!.top_logprobs.entries()) close(alt.logprob, e.top[k]!);
    }
    const stream = await server.client.chat.completions.create({ ...body, stream: true });
    const streamed: OpenAI.ChatCompletionTokenLogprob[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed).toEqual(content);
    // without top_logprobs: the chosen token alone
    const plain = await server.client.chat.completions.create({ ...body, top_logprobs: undefined });
    expect(plain.choices[0]!.logprobs!.content!.map((t) => [t.logprob, t.top_logprobs.length])).toEqual(content.map((t) => [t.logprob, 0]));
    // not asked for: null, as OpenAI's
    expect((await server.client.chat.completions.create({ ...body, logprobs: false, top_logprobs: undefined })).choices[0]!.logprobs).toBeNull();
  });

  it('logprobs are the model\'s, before the penalties and the temperature', async () => {
    const body = { max_tokens: 8, logprobs: 1, seed: 5 };
    const plain = (await complete({ ...body, temperature: 0 })).choices[0]!.logprobs!;
    // greedy still (top_k 1), but a temperature, a filter and a penalty the logprobs must not see
    const hot = (await complete({ ...body, temperature: 0.5, top_k: 1, repeat_penalty: 1.01 })).choices[0]!.logprobs!;
    expect(hot.tokens).toEqual(plain.tokens); // the same tokens ...
    for (const [i, v] of plain.token_logprobs!.entries()) close(hot.token_logprobs![i]!, v); // ... with the same logprobs
  });

  it('at most 20 alternatives; top_logprobs needs logprobs', async () => {
    await expect(complete({ logprobs: 21 })).rejects.toMatchObject({ status: 400, param: 'logprobs' });
    const messages = [{ role: 'user' as const, content: 'hi' }];
    await expect(server.client.chat.completions.create({ model: MODEL, messages, logprobs: true, top_logprobs: 21 })).rejects.toMatchObject({ status: 400, param: 'top_logprobs' });
    await expect(server.client.chat.completions.create({ model: MODEL, messages, top_logprobs: 2 })).rejects.toMatchObject({ status: 400, param: 'top_logprobs' });
    const r = await complete({ max_tokens: 2, temperature: 0, logprobs: 20 });
    expect(Object.keys(r.choices[0]!.logprobs!.top_logprobs![0]!).length).toBeGreaterThan(15); // 20, less the tokens that read the same
  });
});

describe('kvpack serve: fields it does not implement are refused, not ignored', () => {
  const messages = [{ role: 'user' as const, content: 'hi' }];
  const completionFields: Record<string, unknown> = { n: 2, best_of: 3, echo: true, suffix: 'the end', logit_bias: { 50: 100 } };
  const chatFields: Record<string, unknown> = {
    n: 2, logit_bias: { 50: -100 }, tools: [{ type: 'function', function: { name: 'f' } }], functions: [{ name: 'f' }],
    tool_choice: 'required', function_call: { name: 'f' }, response_format: { type: 'json_object' }, modalities: ['text', 'audio'],
    audio: { voice: 'alloy', format: 'mp3' }, prediction: { type: 'content', content: 'x' }, reasoning_effort: 'low',
    web_search_options: {}, store: true,
  };

  it('each with 400 naming it, on both endpoints; values that ask for nothing pass', async () => {
    for (const [field, value] of Object.entries(completionFields)) {
      await expect(complete({ [field]: value }), field).rejects.toMatchObject({ status: 400, code: 'unsupported_parameter', param: field, message: expect.stringContaining(`'${field}'`) });
    }
    for (const [field, value] of Object.entries(chatFields)) {
      await expect(server.client.chat.completions.create({ model: MODEL, messages, [field]: value } as never), field)
        .rejects.toMatchObject({ status: 400, code: 'unsupported_parameter', param: field, message: expect.stringContaining(`'${field}'`) });
    }
    // values that ask for nothing, and null, are accepted
    const r = await complete({ max_tokens: 2, n: 1, best_of: 1, echo: false, suffix: null, logit_bias: {}, user: 'u1' });
    expect(r.choices).toHaveLength(1);
    const chat = await server.client.chat.completions.create({
      model: MODEL, messages, max_tokens: 2, n: 1, logit_bias: {}, tools: [], tool_choice: 'none', response_format: { type: 'text' },
      modalities: ['text'], store: false, audio: null, user: 'u1', metadata: { a: 'b' }, parallel_tool_calls: false,
    } as never);
    expect((chat as OpenAI.ChatCompletion).choices[0]!.finish_reason).toBe('length');
  });

  it('an unknown field is refused as OpenAI refuses it, naming it and the fields there are', async () => {
    await expect(complete({ mirostat: 2 })).rejects.toMatchObject({ status: 400, code: 'unknown_parameter', param: 'mirostat', message: expect.stringContaining('top_k') });
    await expect(server.client.chat.completions.create({ model: MODEL, messages, grammar: 'root ::= "x"' } as never))
      .rejects.toMatchObject({ status: 400, code: 'unknown_parameter', param: 'grammar' });
    // a field of the other endpoint is unknown here
    await expect(server.client.chat.completions.create({ model: MODEL, messages, echo: false } as never)).rejects.toMatchObject({ status: 400, param: 'echo' });
  });
});
