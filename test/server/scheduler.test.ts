import { afterEach, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/engine/model.js';
import { Scheduler } from '../../src/server/scheduler.js';
import { REF6M_DIR, STORIES_BIN } from '../engine/helpers.js';
import { spawnServe, startServer, streamCompletion, type TestServer } from './helpers.js';

const PROMPTS = ['Once upon a time', 'The little dog', 'Lily and Ben went to the park', 'One day, a big bird', 'Tom had a red ball'];
let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Samples the scheduler between its steps until `done` settles; returns the samples. */
async function watch<T>(s: TestServer, done: Promise<T>) {
  const samples: ReturnType<TestServer['scheduler']['stats']>[] = [];
  let finished = false;
  void done.finally(() => (finished = true)).catch(() => {});
  while (!finished) {
    samples.push(s.scheduler.stats());
    await new Promise((resolve) => setImmediate(resolve));
  }
  return { result: await done, samples };
}

describe('kvpack serve: many requests in one KV budget', () => {
  it('gives concurrent greedy requests exactly the text each gets alone', async () => {
    server = await startServer(STORIES_BIN, { parallel: 8, chunkSize: 4 });
    const body = (prompt: string, i: number) => ({ model: 'stories260K', prompt, max_tokens: 40 + 7 * i, temperature: 0, kv_cache: i % 2 ? 'h2o(budget=8)+fp16' : undefined });
    const alone: string[] = [];
    for (const [i, p] of PROMPTS.entries()) alone.push((await server.client.completions.create(body(p, i) as never)).choices[0]!.text);
    const { result, samples } = await watch(server, Promise.all(PROMPTS.map((p, i) => streamCompletion(server!.client, body(p, i) as never))));
    expect(result.map((r) => r.text)).toEqual(alone);
    expect(Math.max(...samples.map((s) => s.sessions))).toBeGreaterThan(1); // they really ran together
  });

  it('never lets the sessions hold more than --max-kv-bytes, and queues the rest', async () => {
    // full f32 on stories260K: 1,360 bytes per token; each request may reach ~60 tokens (82 KB): two fit
    const maxKvBytes = 180_000;
    server = await startServer(STORIES_BIN, { parallel: 8, maxKvBytes, cache: 'full+fp32' });
    const requests = PROMPTS.map((prompt) => server!.client.completions.create({ model: 'stories260K', prompt, max_tokens: 50, temperature: 0 }));
    const { result, samples } = await watch(server, Promise.all(requests));
    expect(result.every((r) => r.usage!.completion_tokens > 0)).toBe(true);
    for (const s of samples) {
      expect(s.kvBytes).toBeLessThanOrEqual(maxKvBytes);
      expect(s.kvBytesReserved).toBeLessThanOrEqual(maxKvBytes);
    }
    expect(Math.max(...samples.map((s) => s.sessions))).toBe(2);
    expect(Math.max(...samples.map((s) => s.queued))).toBeGreaterThan(0);
    const peaks = result.map((r) => (r as unknown as { kv_cache: { peak_bytes: number } }).kv_cache.peak_bytes);
    expect(Math.max(...peaks) * 2).toBeLessThanOrEqual(maxKvBytes);
    expect(server.scheduler.stats()).toMatchObject({ sessions: 0, queued: 0, kvBytes: 0 });
  });

  it('answers 429 once the queue is full', async () => {
    server = await startServer(STORIES_BIN, { parallel: 1, queue: 1 });
    const controller = new AbortController();
    const long = { model: 'stories260K', max_tokens: 400, temperature: 0 };
    const first = server.client.completions.create({ ...long, prompt: 'Once', stream: true }, { signal: controller.signal });
    const running = await first;
    const iterator = running[Symbol.asyncIterator]();
    await iterator.next(); // the first is running
    const second = server.client.completions.create({ ...long, prompt: 'Twice' }, { signal: controller.signal }).catch((e: Error) => e);
    while (server.scheduler.stats().queued < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    await expect(server.client.completions.create({ ...long, prompt: 'Thrice' })).rejects.toMatchObject({ status: 429, code: 'queue_full' });
    controller.abort();
    await second;
  });

  it('frees a session as soon as its client goes away', async () => {
    server = await startServer(STORIES_BIN);
    const controller = new AbortController();
    const stream = await server.client.completions.create(
      { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 450, temperature: 0, stream: true },
      { signal: controller.signal },
    );
    for await (const _ of stream) {
      if (server.scheduler.stats().kvBytes > 0) break;
    }
    expect(server.scheduler.stats().sessions).toBe(1);
    const abortedAt = server.scheduler.stats().steps;
    controller.abort();
    while (server.scheduler.stats().sessions > 0) await new Promise((resolve) => setTimeout(resolve, 2));
    // released on the abort itself, not at the end of the stream: a few steps may run before the socket's close is seen (the stream has hundreds left)
    expect(server.scheduler.stats().steps - abortedAt).toBeLessThanOrEqual(8);
    expect(server.scheduler.stats()).toMatchObject({ sessions: 0, kvBytes: 0, kvBytesReserved: 0 });
    expect(server.scheduler.stats().generatedTokens).toBeLessThan(450); // cancelled, not run to the end
  });
});

describe('kvpack serve as a process', () => {
  it('on SIGTERM refuses new requests, finishes the running stream and exits 0', async () => {
    const { child, url } = await spawnServe(['--model', STORIES_BIN, '--threads', '1']);
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const response = await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 400, temperature: 0, stream: true }),
    });
    const reader = response.body!.getReader();
    await reader.read(); // streaming has begun
    child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 50));
    const refused = await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: 'Hello', max_tokens: 5 }),
    });
    expect(refused.status).toBe(503);
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += Buffer.from(value).toString();
    }
    expect(text).toContain('"finish_reason":"length"');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(await exited).toBe(0);
    await expect(fetch(`${url}/health`)).rejects.toThrow();
  });
});

describe('kvpack serve: a compressed cache in the same budget', () => {
  it('runs several times as many sessions at once as full+fp16', async () => {
    const model = await loadModel(REF6M_DIR, { threads: 1 });
    const prompt = (seed: number) => Array.from({ length: 200 }, (_, i) => 100 + ((i * 37 + seed * 101) % 3000));
    // ref-6m full+fp16: 3,120 bytes per token (keys, values, positions); one 200 + 60-token session fits, two do not
    const maxKvBytes = 1_000_000;
    /** The most sessions running at once while `count` requests are served (steps, not time, decide it). */
    const most = async (cache: string, count: number) => {
      const scheduler = new Scheduler(model, { cache, maxKvBytes, parallel: 8, queue: 8 });
      const done = Promise.all(Array.from({ length: count }, (_, i) =>
        scheduler.submit({ prompt: prompt(i), maxTokens: 60, temperature: 0, topP: 1, seed: 0, stop: [] })));
      let best = 0;
      let finished = false;
      void done.then(() => (finished = true));
      while (!finished) {
        const s = scheduler.stats();
        expect(s.kvBytes).toBeLessThanOrEqual(maxKvBytes);
        best = Math.max(best, s.sessions);
        await new Promise((resolve) => setImmediate(resolve));
      }
      return best;
    };
    try {
      expect(await most('full+fp16', 2)).toBe(1);
      expect(await most('h2o(budget=0.2)+kvquant(bits=3)', 5)).toBeGreaterThanOrEqual(4);
    } finally {
      await model.close();
    }
  });
});

describe('kvpack serve: kernel memory', () => {
  it('queues a request whose cache would not fit beside the others\' allocations, instead of failing it', async () => {
    const model = await loadModel(REF6M_DIR, { threads: 1 });
    const request = { prompt: Array.from({ length: 10 }, (_, i) => 100 + i), maxTokens: 20, temperature: 0, topP: 1, seed: 0, stop: [] };
    try {
      // what one full+fp16 session allocates (its capacity), far above the bytes it holds
      const alone = new Scheduler(model, { cache: 'full+fp16', maxKvBytes: 2 ** 24, parallel: 2, queue: 4 });
      let allocated = 0;
      const one = alone.submit({ ...request, onText: () => (allocated = alone.stats().kvBytesAllocated) });
      const held = (await one).kvCache.peak_bytes;
      expect(allocated).toBeGreaterThan(10 * held);
      // room for one and a half: the second waits for the first, then runs
      const scheduler = new Scheduler(model, { cache: 'full+fp16', maxKvBytes: 2 ** 24, parallel: 2, queue: 4, memoryBytes: Math.floor(allocated * 1.5) });
      let most = 0;
      const done = Promise.all([0, 1].map(() => scheduler.submit({ ...request, onText: () => (most = Math.max(most, scheduler.stats().sessions)) })));
      const results = await done;
      expect(results.map((r) => r.completionTokens)).toEqual([20, 20]);
      expect(most).toBe(1);
      expect(scheduler.stats()).toMatchObject({ sessions: 0, queued: 0, admitted: 2, kvBytesAllocated: 0 });
      // one that could never fit is refused at once, naming the kernel memory
      const tiny = new Scheduler(model, { cache: 'full+fp16', maxKvBytes: 2 ** 24, parallel: 2, queue: 4, memoryBytes: Math.floor(allocated / 2) });
      expect(() => tiny.submit(request)).toThrow(/kernel memory/);
    } finally {
      await model.close();
    }
  });
});

describe('kvpack serve: shutting down', () => {
  it('cancels what has not finished when the grace period ends, and refuses new requests', async () => {
    const model = await loadModel(STORIES_BIN, { threads: 1 });
    try {
      const scheduler = new Scheduler(model, { cache: 'full', maxKvBytes: 2 ** 24, parallel: 1, queue: 4 });
      const request = { prompt: [1, 400, 401], maxTokens: 400, temperature: 0, topP: 1, seed: 0, stop: [] };
      const running = scheduler.submit(request).catch((e: Error) => e);
      const waiting = scheduler.submit(request).catch((e: Error) => e);
      while (scheduler.stats().sessions === 0) await new Promise((resolve) => setImmediate(resolve));
      await scheduler.drain(0);
      expect(await running).toMatchObject({ name: 'CancelledError' });
      expect(await waiting).toMatchObject({ name: 'CancelledError' });
      expect(scheduler.stats()).toMatchObject({ sessions: 0, queued: 0, kvBytes: 0 });
      expect(() => scheduler.submit(request)).toThrow(/shutting down/);
    } finally {
      await model.close();
    }
  });
});
