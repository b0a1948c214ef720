import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseSpec, printSpec } from '../../src/cache/registry.js';
import { CalibrationError, KvpackError, ModelFormatError } from '../../src/errors.js';
import type { Model } from '../../src/engine/model.js';
import { errorResponse } from '../../src/server/app.js';
import { Scheduler } from '../../src/server/scheduler.js';
import { REF6M_DIR, STORIES_BIN, withModel } from '../engine/helpers.js';
import { head, rawRequest, startServer, streamCompletion, type TestServer } from './helpers.js';

// Issue 22: the server is a trust boundary. Every byte a client sends is hostile.

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-trust-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const good = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 4, temperature: 0 };
const errors: Error[] = [];

let server: TestServer;
beforeAll(async () => {
  server = await startServer(STORIES_BIN, { apiKey: 'sekret', bodyLimit: 8 * 2 ** 20, logError: (e) => errors.push(e) });
});
afterAll(() => server.close());

async function post(body: object, target = '/v1/completions') {
  const r = await fetch(`${server.url}${target}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sekret' },
    body: JSON.stringify(body),
  });
  return { status: r.status, text: await r.text() };
}

describe('a request never makes the server read a file (findings 1, 3, 4)', () => {
  it("answers a model named by the server's own path as any unknown model: no oracle for guessed paths", async () => {
    const answers = [];
    for (const model of [server.model.source, path.resolve(server.model.source), '/etc/passwd', 'no-such-model']) {
      const r = await post({ ...good, model });
      expect(r.status).toBe(404);
      answers.push(r.text.replace(JSON.stringify(model).slice(1, -1), 'NAME'));
    }
    expect(new Set(answers).size).toBe(1);
  });

  it('refuses calib in kv_cache with one answer whatever the path names, and reads nothing', async () => {
    const fifo = path.join(tmp, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const readFile = vi.spyOn(fs, 'readFileSync');
    const open = vi.spyOn(fs, 'openSync');
    try {
      const paths = ['/proc/self/environ', '/etc/passwd', '/dev/zero', fifo, tmp, path.join(tmp, 'no-such-file.json'), 'results/calib/none.json'];
      const answers = [];
      for (const p of paths) {
        for (const spec of [`kvquant(calib="${p}")`, `h2o(budget=16)+kvquant(bits=3,calib="${p}")`]) {
          const r = await post({ ...good, kv_cache: spec });
          expect(r.status).toBe(400);
          const error = JSON.parse(r.text).error;
          expect(error.code).toBe('invalid_kv_cache');
          expect(error.message).toBe('kv_cache: calib is not accepted in requests; the server operator sets calibration with --cache');
          answers.push(r.text);
        }
      }
      // no oracle: the same bytes for a file that exists, one that does not, a directory, a FIFO
      expect(new Set(answers).size).toBe(1);
      const touched = [...readFile.mock.calls, ...open.mock.calls].map((c) => String(c[0]));
      expect(touched.filter((f) => paths.some((p) => f.includes(path.basename(p))))).toEqual([]);
    } finally {
      readFile.mockRestore();
      open.mockRestore();
    }
    // and the server still answers
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  it('turns errors that are not the client\'s into "internal error": no path, file content or errno text', () => {
    const leaks = [
      new CalibrationError('/etc/passwd', 'is not JSON: Unexpected token r, "root:x:0:0" is not valid JSON'),
      new ModelFormatError('/home/op/models/x.gguf', 'truncated'),
      new KvpackError('/proc/self/environ: SHELL=/bin/bash'),
      Object.assign(new Error("ENOENT: no such file or directory, open '/etc/shadow'"), { code: 'ENOENT', errno: -2 }),
      Object.assign(new Error("EISDIR: illegal operation on a directory, read '/etc'"), { statusCode: 400, code: 'EISDIR' }),
    ];
    for (const e of leaks) {
      const { status, body } = errorResponse(e);
      expect([500, 400]).toContain(status);
      expect(body.error.message).toBe(status === 500 ? 'internal error (please report)' : 'bad request');
    }
    // a body the client stopped sending is its own doing, not an internal error
    const aborted = errorResponse(Object.assign(new Error('aborted'), { code: 'ECONNRESET', statusCode: 400 }));
    expect([aborted.status, aborted.body.error.message]).toEqual([400, 'bad request']);
    expect(errorResponse(Object.assign(new Error('/etc/passwd'), { code: 'constructor', statusCode: 400 })).body.error.message).toBe('bad request');
  });
});

describe('--api-key holds on every spelling of a path (finding 2)', () => {
  const withKey = { authorization: 'Bearer sekret' };
  const completion = JSON.stringify(good);

  it('refuses percent-encoded, absolute-form, dot-segment and case variants without the key', async () => {
    const url = server.url;
    const variants: [string, string, string?][] = [
      ['POST', '/%76%31/completions', completion],
      ['POST', '/v1/%63ompletions', completion],
      ['POST', '/v1/chat/%63ompletions', JSON.stringify({ model: 'stories260K', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 })],
      ['GET', `http://x/v1/models`],
      ['GET', `${url}/v1/models`],
      ['GET', '/%76%31/models'],
      ['GET', '/v1/../v1/models'],
      ['GET', '/x/../v1/models'],
      ['GET', '/./v1/models'],
      ['GET', '/V1/MODELS'],
      ['GET', '/v1//models'],
      ['GET', '/v1/models/'],
      ['GET', '/v1/models?x=1'],
      ['GET', '/v1/models;x'],
      ['GET', '//v1/models'],
      ['GET', '/nowhere'],
    ];
    for (const [method, target, body] of variants) {
      const r = await rawRequest(url, head(url, method, target, {}, body), body);
      expect(r.status, `${method} ${target}`).toBe(401);
      expect(r.text).toContain('missing_api_key');
    }
    // a key that is wrong, a prefix, longer, or in another scheme
    for (const authorization of ['Bearer sekre', 'Bearer sekrett', 'Bearer SEKRET', 'Basic sekret', 'Bearer', 'Bearer  ']) {
      const r = await rawRequest(url, head(url, 'POST', '/%76%31/completions', { authorization }, completion), completion);
      expect(r.status, authorization).toBe(401);
    }
  });

  it('answers the same variants with the key, and /health and /metrics without one', async () => {
    const url = server.url;
    expect((await rawRequest(url, head(url, 'POST', '/%76%31/completions', withKey, completion), completion)).status).toBe(200);
    expect((await rawRequest(url, head(url, 'GET', 'http://x/v1/models', withKey))).status).toBe(200);
    expect((await rawRequest(url, head(url, 'GET', '/v1/models', { authorization: 'bearer   sekret' }))).status).toBe(200);
    for (const target of ['/health', '/metrics', 'http://x/health', '/%68ealth']) {
      expect((await rawRequest(url, head(url, 'GET', target))).status, target).toBe(200);
    }
  });
});

describe('Host header on a loopback server, against DNS rebinding (finding 9)', () => {
  it('answers to localhost, 127.0.0.1 and [::1] with its port, and to nothing else', async () => {
    const url = server.url;
    const port = new URL(url).port;
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, `[::1]:${port}`, `LOCALHOST:${port}`]) {
      expect((await rawRequest(url, head(url, 'GET', '/health', { host }))).status, host).toBe(200);
    }
    for (const host of [`evil.example:${port}`, 'localhost', `localhost:${Number(port) + 1}`, `127.0.0.1.evil.example:${port}`, `localhost:${port}.evil`, '']) {
      const r = await rawRequest(url, head(url, 'GET', '/health', { host }));
      expect(r.status === 421 || r.status === 400, `Host: ${host}`).toBe(true);
    }
    const rebound = await rawRequest(url, head(url, 'POST', '/v1/completions', { host: `evil.example:${port}`, authorization: 'Bearer sekret' }, JSON.stringify(good)), JSON.stringify(good));
    expect(rebound.status).toBe(421);
    expect(rebound.text).toContain('misdirected_request');
  });
});

describe('request bodies (findings 6, 8, 9)', () => {
  it('refuses a prompt far past the context before tokenizing it, while a stream keeps running', async () => {
    const encode = vi.spyOn(server.model.tokenizer, 'encode');
    try {
      const stream = streamCompletion(server.client, { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 200, temperature: 0 });
      const huge = 'Once upon a time there was a dog. '.repeat(28_000); // ~950 KB
      const r = await post({ ...good, prompt: huge });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.text).error.code).toBe('context_length_exceeded');
      expect(JSON.parse(r.text).error.message).toMatch(/the prompt \(952000 characters\) cannot fit the model's context of 512 tokens/);
      const chat = await post({ model: 'stories260K', messages: [{ role: 'user', content: huge }] }, '/v1/chat/completions');
      expect(chat.status).toBe(400);
      expect(encode.mock.calls.filter(([text]) => text.length > 100_000)).toEqual([]);
      const { usage, finish } = await stream;
      expect(finish).toBe('length');
      expect(usage!.completion_tokens).toBe(200);
    } finally {
      encode.mockRestore();
    }
    // within the character bound but long: counted a slice at a time, never tokenized whole
    const sliced = vi.spyOn(server.model.tokenizer, 'encode');
    try {
      const long = 'dog '.repeat(3000);
      const r = await post({ ...good, prompt: long });
      expect(r.status).toBe(400);
      expect(JSON.parse(r.text).error.message).toMatch(/the prompt \(more than 512 tokens in its first \d+ characters\) exceeds the model's context of 512 tokens/);
      expect(sliced.mock.calls.length).toBeGreaterThan(0);
      expect(sliced.mock.calls.filter(([text]) => text.length > 4096)).toEqual([]);
    } finally {
      sliced.mockRestore();
    }
    // a prompt just within the bound is still tokenized and judged by its token count
    const near = await post({ ...good, prompt: 'dog '.repeat(400) });
    expect(near.status).toBe(400);
    expect(JSON.parse(near.text).error.message).toContain('exceed the model\'s context');
  });

  it('counts a long prompt that fits in slices, then runs it on its exact tokens', async () => {
    const ref = await startServer(REF6M_DIR, { maxKvBytes: 2 ** 26 });
    try {
      const text = 'The history of the city begins with a small village on the river, where farmers and traders met every week. '.repeat(60);
      expect(text.length).toBeGreaterThan(4096); // two slices at least
      const r = await ref.client.completions.create({ model: 'ref-6m', prompt: text, max_tokens: 1, temperature: 0 });
      const ids = ref.model.tokenizer.encode(text, { addBos: ref.model.tokenizer.addBosByDefault });
      expect(ids.length).toBeLessThan(ref.model.config.maxContext);
      expect(r.usage!.prompt_tokens).toBe(ids.length);
    } finally {
      await ref.close();
    }
  });

  it('takes seeds in the library\'s range only: 0 .. 2^32-1', async () => {
    for (const seed of [2 ** 32, 2 ** 40, -1, 1.5]) {
      const r = await post({ ...good, temperature: 1, seed });
      expect(r.status, String(seed)).toBe(400);
      expect(JSON.parse(r.text).error.param).toBe('seed');
    }
    const a = await post({ ...good, temperature: 1, seed: 2 ** 32 - 1 });
    const b = await post({ ...good, temperature: 1, seed: 0 });
    expect([a.status, b.status]).toEqual([200, 200]);
  });

  it('drops __proto__ and constructor.prototype keys and answers the request', async () => {
    for (const extra of ['"__proto__": {"max_tokens": 99}', '"constructor": {"prototype": {"polluted": true}}']) {
      const body = `{"model": "stories260K", "prompt": "Once", "max_tokens": 2, "temperature": 0, ${extra}}`;
      const r = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sekret' }, body });
      expect(r.status, extra).toBe(200);
      expect(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(2);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('logs nothing as an internal error for all of the above', () => {
    expect(errors).toEqual([]);
  });
});

describe('memory per spec and the peak gauge (findings 7, 9)', () => {
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  const request = (cache?: string) => ({ prompt: [1, 400, 401, 402], maxTokens: 2, temperature: 0, topP: 1, seed: 1, stop: [], cache });

  it('keeps a bounded number of measured specs, however many distinct ones clients send', async () => {
    const scheduler = new Scheduler(model, { cache: 'full+fp16', maxKvBytes: 2 ** 24, parallel: 4, queue: 16 });
    for (let i = 0; i < 150; i++) await scheduler.submit(request(`h2o(budget=${8 + i})`));
    expect(scheduler.specsCosted).toBeLessThanOrEqual(65);
    // the default spec is kept: a request without kv_cache still runs
    expect((await scheduler.submit(request())).kvCache.spec).toBe(printSpec(parseSpec('full+fp16')));
  });

  it('names the operator\'s stored calibration by its file name only, never where the server keeps it', async () => {
    const store = path.join(tmp, 'store');
    const file = path.join(store, 'calibration', `${model.identity().weights}.calib`);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.copyFileSync('results/calibration/stories260K.fisher.calib', file);
    const before = process.env.KVPACK_CACHE_DIR;
    process.env.KVPACK_CACHE_DIR = store;
    try {
      const scheduler = new Scheduler(model, { cache: 'full+fp16', maxKvBytes: 2 ** 24, parallel: 4, queue: 16 });
      const { kvCache } = await scheduler.submit(request('kvquant(bits=3)'));
      expect(kvCache.note).toContain(`using calibration ${path.basename(file)}`);
      expect(kvCache.note).not.toContain('/');
    } finally {
      if (before === undefined) delete process.env.KVPACK_CACHE_DIR;
      else process.env.KVPACK_CACHE_DIR = before;
    }
  });

  it('counts a session that ends within one step in kvpack_kv_bytes_peak', async () => {
    const scheduler = new Scheduler(model, { cache: 'full+fp16', maxKvBytes: 2 ** 24, parallel: 4, queue: 16 });
    const result = await scheduler.submit({ ...request(), maxTokens: 1 });
    expect(result.kvCache.bytes).toBeGreaterThan(0);
    expect(scheduler.stats().kvBytes).toBe(0);
    expect(scheduler.stats().kvBytesPeak).toBeGreaterThanOrEqual(result.kvCache.bytes);
  });
});

describe('slow clients and connection count (finding 9)', () => {
  let small: TestServer | undefined;
  afterEach(async () => {
    await small?.close();
    small = undefined;
  });

  it('closes slowloris sockets and connections past the cap, and keeps answering', async () => {
    small = await startServer(STORIES_BIN, { limits: { maxConnections: 8, headersTimeoutMs: 300, requestTimeoutMs: 600, keepAliveTimeoutMs: 300 } });
    const { hostname, port } = new URL(small.url);
    const sockets = Array.from({ length: 40 }, () => {
      const socket = net.connect(Number(port), hostname);
      socket.on('error', () => {});
      socket.write(`GET /health HTTP/1.1\r\nHost: ${hostname}:${port}\r\nX-Slow: `); // and never the rest
      socket.resume(); // reads what the server says, so its closing is seen
      return new Promise<void>((resolve) => socket.on('close', () => resolve()));
    });
    await Promise.all(sockets); // each one closed by the server (the test's own timeout is the bound)
    expect((await fetch(`${small.url}/health`)).status).toBe(200);
  });
});
