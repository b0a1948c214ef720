import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STORIES_BIN } from '../engine/helpers.js';
import { startServer, streamCompletion, type TestServer } from './helpers.js';

let server: TestServer;
beforeAll(async () => {
  server = await startServer(STORIES_BIN);
});
afterAll(() => server.close());

async function alone(prompt: string, maxTokens: number, cache?: string): Promise<string> {
  const session = server.model.session(cache ? { cache } : { cache: 'full' });
  let text = '';
  for await (const piece of session.generate(prompt, { maxTokens, temperature: 0 })) text += piece;
  session.dispose();
  return text;
}

describe('kvpack serve: the OpenAI API', () => {
  it('lists the model and reports health', async () => {
    const models = await server.client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['stories260K']);
    const health = await fetch(`${server.url}/health`);
    expect(await health.json()).toEqual({ status: 'ok' });
  });

  it('completes greedily as the library does, with usage and kv_cache stats', async () => {
    const r = await server.client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
    expect(r.choices[0]!.text).toBe(await alone('Once upon a time', 24));
    expect(r.choices[0]!.finish_reason).toBe('length');
    expect(r.usage).toEqual({ prompt_tokens: 5, completion_tokens: 24, total_tokens: 29 });
    const kv = (r as unknown as { kv_cache: Record<string, number | string> }).kv_cache;
    expect(kv.spec).toBe('full'); // fp16, the default codec: the canonical spec leaves it out
    expect(kv.bytes).toBeGreaterThan(0);
    expect(kv.full_fp16_bytes).toBeGreaterThan(0);
  });

  it('streams the same text, ends with usage, and the client sees [DONE]', async () => {
    const prompt = 'The little dog';
    const { text, usage, finish } = await streamCompletion(server.client, { model: 'stories260K', prompt, max_tokens: 20, temperature: 0 });
    expect(text).toBe(await alone(prompt, 20));
    expect(finish).toBe('length');
    expect(usage?.completion_tokens).toBe(20);
    const raw = await (await fetch(`${server.url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt, max_tokens: 3, stream: true }),
    })).text();
    expect(raw.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });

  it('stops before a stop string and counts what it generated', async () => {
    const full = await alone('Once upon a time', 24);
    const stop = full.slice(10, 14);
    const r = await server.client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 24, temperature: 0, stop: [stop] });
    expect(r.choices[0]!.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(r.choices[0]!.finish_reason).toBe('stop');
  });

  it('chats with the default template, streaming and not', async () => {
    const messages = [{ role: 'user' as const, content: 'Tell me a story.' }];
    const r = await server.client.chat.completions.create({ model: 'stories260K', messages, max_tokens: 16, temperature: 0 });
    const expected = await alone('user: Tell me a story.\nassistant:', 16);
    expect(r.choices[0]!.message).toMatchObject({ role: 'assistant', content: expected });
    expect(r.usage?.completion_tokens).toBe(16);
    const stream = await server.client.chat.completions.create({ model: 'stories260K', messages, max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let usage;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      usage = chunk.usage ?? usage;
    }
    expect(text).toBe(expected);
    expect(usage?.total_tokens).toBe(r.usage?.total_tokens);
  });

  it('runs each request with the kv_cache it names', async () => {
    const prompt = 'Once upon a time, there was a little girl named Lily. She loved to play';
    const spec = 'h2o(budget=8)+kvquant(bits=3)';
    const r = await server.client.completions.create({ model: 'stories260K', prompt, max_tokens: 12, temperature: 0, kv_cache: spec } as never);
    const kv = (r as unknown as { kv_cache: { spec: string; bytes: number; full_fp16_bytes: number; compression: number; note?: string } }).kv_cache;
    expect(kv.spec).toBe(spec);
    expect(kv.compression).toBeGreaterThan(1.5); // 8 of 30 tokens kept, at 3 bits plus stories260K's small-head overheads
    expect(kv.full_fp16_bytes / kv.bytes).toBeCloseTo(kv.compression, 6);
    // fewer tokens than kvquant calibrates on without a file: its rows are still f16, and the response says so
    expect(kv.note).toMatch(/^kvquant: no calibration file, so each layer keeps its first 64 tokens as f16 rows .* not reached them yet/);
    expect(r.choices[0]!.text).toBe(await alone(prompt, 12, spec));
  });

  it('samples reproducibly with a seed', async () => {
    const body = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 16, temperature: 0.9, top_p: 0.9, seed: 7 };
    const a = await server.client.completions.create(body);
    const b = await server.client.completions.create(body);
    expect(a.choices[0]!.text).toBe(b.choices[0]!.text);
  });

  it('exports Prometheus metrics', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    for (const name of ['kvpack_kv_bytes', 'kvpack_kv_bytes_peak', 'kvpack_sessions', 'kvpack_queue_length', 'kvpack_prompt_tokens_total', 'kvpack_generated_tokens_total', 'kvpack_tokens_per_second']) {
      expect(text).toMatch(new RegExp(`^${name} \\d`, 'm'));
    }
    expect(Number(/^kvpack_generated_tokens_total (\d+)/m.exec(text)![1])).toBeGreaterThan(0);
  });
});
