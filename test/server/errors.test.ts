import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STORIES_BIN } from '../engine/helpers.js';
import { startServer, type TestServer } from './helpers.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer(STORIES_BIN, { apiKey: 'sekret', bodyLimit: 4096, maxKvBytes: 2 ** 18 });
});
afterAll(() => server.close());

const good = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 4, temperature: 0 };

async function post(path: string, body: string, headers: Record<string, string> = {}) {
  const r = await fetch(`${server.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sekret', ...headers },
    body,
  });
  return { status: r.status, body: (await r.json()) as { error: { message: string; type: string; param: string | null; code: string | null } } };
}

/** An OpenAI-style error naming the problem, with every field present. */
function expectError(r: Awaited<ReturnType<typeof post>>, status: number, code: string, ...phrases: string[]) {
  expect(r.status).toBe(status);
  expect(Object.keys(r.body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(r.body.error.code).toBe(code);
  for (const p of phrases) expect(r.body.error.message).toContain(p);
}

describe('kvpack serve: bad input gets a 4xx naming the problem', () => {
  it('malformed JSON', async () => {
    expectError(await post('/v1/completions', '{"model": "stories260K", "prompt": '), 400, 'invalid_json', 'JSON');
  });

  it('wrong types, missing fields, out-of-range values', async () => {
    const maxTokens = await post('/v1/completions', JSON.stringify({ ...good, max_tokens: '5' }));
    expectError(maxTokens, 400, 'invalid_value', 'max_tokens');
    expect(maxTokens.body.error.param).toBe('max_tokens');
    const missing = await post('/v1/completions', JSON.stringify({ model: 'stories260K' }));
    expectError(missing, 400, 'invalid_value', 'prompt');
    expect(missing.body.error.param).toBe('prompt');
    expectError(await post('/v1/completions', JSON.stringify({ ...good, temperature: 101 })), 400, 'invalid_value', 'temperature');
    expectError(await post('/v1/chat/completions', JSON.stringify({ model: 'stories260K', messages: [{ role: 'robot', content: 'hi' }] })), 400, 'invalid_value', 'role');
    expectError(await post('/v1/completions', JSON.stringify({ ...good, prompt: [1, 2, 999999] })), 400, 'invalid_token', '999999');
  });

  it('an unknown model', async () => {
    const r = await post('/v1/completions', JSON.stringify({ ...good, model: 'gpt-5' }));
    expectError(r, 404, 'model_not_found', 'gpt-5', 'stories260K');
    expect(r.body.error.param).toBe('model');
  });

  it('a bad kv_cache spec, or one whose parts do not fit together', async () => {
    const r = await post('/v1/completions', JSON.stringify({ ...good, kv_cache: 'h2o(budget=-1)' }));
    expectError(r, 400, 'invalid_kv_cache', 'h2o(budget=-1)', 'budget');
    expect(r.body.error.param).toBe('kv_cache');
    expectError(await post('/v1/completions', JSON.stringify({ ...good, kv_cache: 'nonsense+fp16' })), 400, 'invalid_kv_cache', 'nonsense');
  });

  it('a prompt longer than the context, and a request larger than the KV budget', async () => {
    const long = Array.from({ length: 600 }, () => 400);
    expectError(await post('/v1/completions', JSON.stringify({ ...good, prompt: long })), 400, 'context_length_exceeded', '600 tokens', 'context of 512');
    expectError(await post('/v1/completions', JSON.stringify({ ...good, prompt: long.slice(0, 500), kv_cache: 'full' })), 400, 'context_length_exceeded', 'KV budget');
  });

  it('a body over the size limit', async () => {
    expectError(await post('/v1/completions', JSON.stringify({ ...good, prompt: 'x'.repeat(5000) })), 413, 'body_too_large');
  });

  it('a missing or wrong API key', async () => {
    expectError(await post('/v1/completions', JSON.stringify(good), { authorization: '' }), 401, 'missing_api_key', 'Bearer');
    expectError(await post('/v1/completions', JSON.stringify(good), { authorization: 'Bearer nope' }), 401, 'invalid_api_key');
    const wrong = server.client.withOptions({ apiKey: 'nope' });
    await expect(wrong.completions.create(good)).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
  });

  it('keeps serving everyone else', async () => {
    const r = await post('/v1/completions', JSON.stringify(good));
    expect(r.status).toBe(200);
    expect((r.body as unknown as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(4);
  });
});
