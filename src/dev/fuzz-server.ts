/**
 * The server area of `npm run fuzz`: `kvpack serve` (the app and scheduler, in this process) on loopback
 * with an API key, sent random requests, header sets, spellings of paths, cache specs (file paths
 * among them), bodies and slow clients. A 2xx is accepted; a 4xx, a 408 or a connection the server
 * closes on malformed HTTP is a typed error; a finding is a 5xx, an answer quoting a file, a path or
 * errno text the request did not contain, a /v1 answer without the key, an answer to a foreign Host,
 * a socket the server leaves open past its deadlines, or /health not answering after a case.
 */
import net from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Model } from '../engine/model.js';
import { createApp } from '../server/app.js';
import { loadChatTemplate } from '../server/chat.js';
import { Scheduler } from '../server/scheduler.js';

type Outcome = 'accepted' | 'typed error' | 'finding';
type Result = { outcome: Outcome; input: string; problem?: string };

const KEY = 'fuzz-key';
const LIMITS = { maxConnections: 64, headersTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 500 };
/** Longest a case may take before it counts as a hang: the server's deadlines and then some. */
const HANG_MS = 8000;
/** Text that must never reach a client unless it sent it: file contents, errno names, stack frames. */
const LEAKS = ['root:x:', 'SHELL=', 'PATH=', 'HOME=', 'ENOENT', 'EISDIR', 'EACCES', 'ENXIO', 'EPERM', '/etc/', '/proc/', '/dev/', '    at '];
const FILES = ['/etc/passwd', '/proc/self/environ', '/dev/zero', '/dev/stdin', '/tmp', '/nonexistent/x.json', '../../etc/passwd', 'results/calib.json', '~/.ssh/id_rsa'];

const pick = <T>(random: () => number, list: readonly T[]): T => list[Math.floor(random() * list.length)]!;

/**
 * Fields beside the basic ones, with values a client may send: the samplers and logprobs (in range and
 * past it), OpenAI's fields the server does not implement (values that ask for nothing and ones that
 * do), and fields it does not know (llama-server's extensions).
 */
const FIELD_VALUES: Record<string, readonly unknown[]> = {
  top_k: [0, 1, 40, -1, 1e9],
  min_p: [0, 0.05, 1, 1.5],
  repeat_penalty: [1, 1.1, 5, 0, 100],
  repetition_penalty: [1.3, 0.5, 101],
  repeat_last_n: [-1, 0, 64, 1e6, -2],
  presence_penalty: [-2, 0, 2, 2.5],
  frequency_penalty: [-2, 1.5, 2, -3],
  logprobs: [true, false, 0, 5, 20, 21],
  top_logprobs: [0, 3, 20, 21],
  n: [1, 2],
  best_of: [1, 3],
  echo: [false, true],
  suffix: ['', 'the end'],
  logit_bias: [{}, { 50: 100 }],
  tools: [[], [{ type: 'function', function: { name: 'f' } }]],
  tool_choice: ['none', 'auto', 'required'],
  response_format: [{ type: 'text' }, { type: 'json_object' }],
  modalities: [['text'], ['text', 'audio']],
  audio: [{ voice: 'alloy', format: 'mp3' }],
  prediction: [{ type: 'content', content: 'x' }],
  store: [false, true],
  user: ['u1'],
  metadata: [{ a: 'b' }],
  mirostat: [2],
  grammar: ['root ::= "x"'],
  n_probs: [3],
};

export async function serverArea(model: Model, randomSpec: (random: () => number) => string) {
  const scheduler = new Scheduler(model, { cache: 'full+fp16', maxKvBytes: 2 ** 22, parallel: 4, queue: 8, chunkSize: 16 });
  const chatTemplate = await loadChatTemplate(model.source, model.format);
  const internal: string[] = [];
  const app: FastifyInstance = createApp({
    model, scheduler, chatTemplate, maxKvBytes: 2 ** 22, apiKey: KEY, bodyLimit: 64 * 1024, host: '127.0.0.1', limits: LIMITS,
    logError: (e) => internal.push(`${e.name}: ${e.message}`),
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const { host, port } = new URL(url);
  const leakMarkers = [...LEAKS, model.source];

  /** Writes `bytes` (in pieces, slowly, when asked) and reads until the server closes; null status if it never does in time. */
  function raw(bytes: string, options: { slowMs?: number; stopAfter?: number; leave?: boolean } = {}): Promise<{ status: number | null; text: string; closed: boolean }> {
    return new Promise((resolve) => {
      const socket = net.connect(Number(port), '127.0.0.1');
      let text = '';
      let done = false;
      const finish = (closed: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0) || null, text, closed });
      };
      const timer = setTimeout(() => finish(false), HANG_MS);
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        if (options.leave) finish(true); // the client goes away once the answer starts
      });
      socket.on('error', () => {});
      socket.on('close', () => finish(true));
      const upTo = Math.min(bytes.length, options.stopAfter ?? bytes.length);
      if (!options.slowMs) return void socket.write(bytes.slice(0, upTo));
      let at = 0;
      const drip = () => {
        if (done || at >= upTo) return;
        socket.write(bytes.slice(at, at + 3));
        at += 3;
        setTimeout(drip, options.slowMs);
      };
      drip();
    });
  }

  const request = (method: string, target: string, headers: Record<string, string>, body = '') => {
    const all: Record<string, string> = { host: `${host}`, connection: 'close', ...headers };
    if (body && all['content-length'] === undefined) all['content-length'] = String(Buffer.byteLength(body));
    return `${method} ${target} HTTP/1.1\r\n${Object.entries(all).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n${body}`;
  };

  /** The verdict on an answer: the request as the case describes it, what it sent, what came back. */
  function judge(input: string, sent: string, r: { status: number | null; text: string; closed: boolean }, expect?: (status: number) => string | undefined): Result {
    if (!r.closed) return { outcome: 'finding', input, problem: `no answer and the connection still open after ${HANG_MS} ms` };
    for (const marker of leakMarkers) {
      if (r.text.includes(marker) && !sent.includes(marker)) return { outcome: 'finding', input, problem: `the answer contains "${marker}": ${r.text.slice(0, 300)}` };
    }
    if (r.status !== null && r.status >= 500 && r.status !== 503) return { outcome: 'finding', input, problem: `HTTP ${r.status}: ${r.text.slice(-300)}` };
    const wrong = r.status === null ? undefined : expect?.(r.status);
    if (wrong) return { outcome: 'finding', input, problem: wrong };
    return { outcome: r.status !== null && r.status < 300 ? 'accepted' : 'typed error', input };
  }

  const weird = (random: () => number): unknown => pick(random, [
    0, -1, 1, 0.5, 2 ** 32, 2 ** 53, 1e308, -1e308, '', '5', 'NaN', null, true, [], {}, [null], { __proto__: { x: 1 } }, 'x'.repeat(2000), '\u0000', '\ud800',
  ]);
  const spec = (random: () => number): string => {
    const r = random();
    if (r < 0.3) return `kvquant(bits=${pick(random, [2, 3, 4])},calib=${random() < 0.5 ? JSON.stringify(pick(random, FILES)) : pick(random, FILES)})`;
    if (r < 0.45) return `h2o(budget=${Math.floor(random() * 600)})`;
    return randomSpec(random);
  };
  const prompt = (random: () => number): unknown => pick(random, [
    'Once upon a time', '', ' ', '\u0000\u0001', '😀'.repeat(100), 'dog '.repeat(Math.floor(random() * 4000)), [1, 2, 3], [0], [-1], [1e9], [1.5], ['a'], ['a', 'b'], [], 'x'.repeat(60_000),
  ]);

  /** A completion or chat body: a valid one with a few fields replaced by odd values, or set to values a client may send. */
  function body(random: () => number, chat: boolean): Record<string, unknown> {
    const b: Record<string, unknown> = { model: 'stories260K', max_tokens: 1 + Math.floor(random() * 6), temperature: 0 };
    if (chat) b.messages = [{ role: 'user', content: 'Hello' }];
    else b.prompt = 'Once upon a time';
    for (let i = Math.floor(random() * 5); i > 0; i--) {
      const field = pick(random, [
        'kv_cache', 'kv_cache', 'seed', 'temperature', 'top_p', 'max_tokens', 'stop', 'stream', 'n', 'prompt', 'messages', 'model', '__proto__',
        'stream_options', 'max_completion_tokens', ...Object.keys(FIELD_VALUES), ...Object.keys(FIELD_VALUES),
      ]);
      const values = Object.hasOwn(FIELD_VALUES, field) ? FIELD_VALUES[field]! : undefined;
      if (field === 'kv_cache') b.kv_cache = random() < 0.8 ? spec(random) : weird(random);
      else if (field === 'prompt') b.prompt = prompt(random);
      else if (field === 'messages') b.messages = pick(random, [[], [{ role: 'user' }], [{ role: 'user', content: prompt(random) }], [{ role: 'system', content: [{ type: 'text', text: 'x' }] }], 'hi']);
      else if (field === 'max_tokens') b.max_tokens = random() < 0.5 ? weird(random) : Math.floor(random() * 600);
      else if (values && random() < 0.7) b[field] = pick(random, values);
      else b[field] = weird(random);
    }
    return b;
  }

  const PATHS = ['/v1/completions', '/v1/chat/completions', '/v1/models', '/health', '/metrics'];
  /** Another spelling of a path: percent-encoded letters, absolute form, dot segments, case, doubled slashes, a query. */
  function spelling(random: () => number, path: string): string {
    const kind = pick(random, ['encode', 'absolute', 'dots', 'case', 'slashes', 'query', 'plain', 'encode-slash', 'semicolon']);
    const chars = [...path];
    switch (kind) {
      case 'encode': return chars.map((c) => (c !== '/' && random() < 0.5 ? `%${c.charCodeAt(0).toString(16)}` : c)).join('');
      case 'encode-slash': return path.replace(/\//g, (s, at: number) => (at > 0 && random() < 0.5 ? '%2f' : s));
      case 'absolute': return `http://${pick(random, ['x', host, 'localhost', 'evil.example'])}${path}`;
      case 'dots': return `/${pick(random, ['.', '..', 'a/..', './.'])}${path}`;
      case 'case': return chars.map((c) => (random() < 0.3 ? c.toUpperCase() : c)).join('');
      case 'slashes': return path.replace('/', '//');
      case 'query': return `${path}?${pick(random, ['a=1', '%00', '../', 'x'.repeat(3000)])}`;
      case 'semicolon': return `${path};x`;
      default: return path;
    }
  }

  const cases: ((random: () => number) => Promise<Result>)[] = [
    // a JSON request with odd fields, with the key
    async (random) => {
      const chat = random() < 0.4;
      const b = body(random, chat);
      const text = JSON.stringify(b) ?? '';
      const stream = b.stream === true;
      const sent = request('POST', chat ? '/v1/chat/completions' : '/v1/completions', { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, text);
      // a streaming client sometimes goes away mid-answer
      const r = await raw(sent, { leave: stream && random() < 0.5 });
      return judge(`POST ${chat ? 'chat' : 'completions'} ${text.slice(0, 200)}`, sent, r);
    },
    // a path spelled another way, without the key: only /health and /metrics may answer 2xx
    async (random) => {
      const path = pick(random, PATHS);
      const target = spelling(random, path);
      const method = path.includes('completions') ? 'POST' : 'GET';
      const sent = request(method, target, { 'content-type': 'application/json' }, method === 'POST' ? JSON.stringify(body(random, path.includes('chat'))) : '');
      const open = path === '/health' || path === '/metrics';
      return judge(`${method} ${target} without a key`, sent, await raw(sent), (status) => (status < 300 && !open ? `HTTP ${status} without the API key` : undefined));
    },
    // odd headers: Host, authorization, content type and length, encodings, sizes
    async (random) => {
      const headers: Record<string, string> = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
      const text = JSON.stringify(body(random, false));
      const kind = pick(random, ['host', 'auth', 'type', 'length', 'chunked', 'huge', 'many', 'dup-host']);
      let foreignHost = false;
      if (kind === 'host') {
        headers.host = pick(random, [`evil.example:${port}`, 'localhost', `127.0.0.1:${Number(port) + 1}`, '', `[::1]`, `${host}.evil`, `localhost:${port}`]);
        foreignHost = !['localhost', '127.0.0.1', '[::1]'].some((n) => headers.host === `${n}:${port}`);
      }
      if (kind === 'auth') headers.authorization = pick(random, ['', 'Bearer', `Bearer ${KEY}x`, `Basic ${KEY}`, `Bearer ${KEY.slice(0, -1)}`, `bearer ${KEY}`, `Bearer ${KEY} ${KEY}`, 'Bearer \u00ff']);
      if (kind === 'type') headers['content-type'] = pick(random, ['text/plain', 'application/json; charset=utf-16', '', 'multipart/form-data', 'application/x-www-form-urlencoded']);
      if (kind === 'length') headers['content-length'] = pick(random, ['-1', '0', String(text.length + 10), '1e3', 'abc', String(2 ** 40)]);
      if (kind === 'chunked') headers['transfer-encoding'] = pick(random, ['chunked', 'gzip', 'chunked, chunked']);
      if (kind === 'huge') headers['x-big'] = 'a'.repeat(pick(random, [1000, 20_000, 100_000]));
      if (kind === 'many') for (let i = 0; i < 200; i++) headers[`x-${i}`] = String(i);
      let sent = request('POST', '/v1/completions', headers, text);
      if (kind === 'dup-host') sent = sent.replace('\r\n', `\r\nHost: evil.example:${port}\r\n`);
      const r = await raw(sent);
      return judge(`headers ${kind}: ${JSON.stringify(headers).slice(0, 200)}`, sent, r, (status) => (foreignHost && status < 300 ? `HTTP ${status} to Host ${headers.host}` : undefined));
    },
    // bodies that are not the JSON a handler expects
    async (random) => {
      const text = pick(random, [
        '{', '[]', 'null', '"x"', '{"model": "stories260K", "prompt": "x", "max_tokens": 2, "__proto__": {"a": 1}}',
        '{"constructor": {"prototype": {"a": 1}}, "model": "stories260K", "prompt": "x", "max_tokens": 2}', '['.repeat(5000) + ']'.repeat(5000),
        JSON.stringify({ model: 'stories260K', prompt: 'x', max_tokens: 2 }).slice(0, Math.floor(random() * 40)), '\u0000\u00ff\ufffd', 'x'.repeat(70_000),
        `{"model": "stories260K", "prompt": "x", "max_tokens": 2, "kv_cache": ${JSON.stringify(spec(random))}}`, '{"model": "stories260K", "prompt": 1e999}',
      ]);
      const sent = request('POST', pick(random, ['/v1/completions', '/v1/chat/completions']), { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, text);
      return judge(`body ${JSON.stringify(text.slice(0, 120))}`, sent, await raw(sent));
    },
    // a slow client: headers or body a few bytes at a time, or stopped half way; the server must close it
    async (random) => {
      const text = JSON.stringify(body(random, false));
      const sent = request('POST', '/v1/completions', { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, text);
      const stopAfter = random() < 0.5 ? Math.floor(random() * sent.length) : sent.length;
      const slowMs = pick(random, [0, 50, 200]);
      const r = await raw(sent, { slowMs, stopAfter });
      return judge(`slow client: ${slowMs} ms per 3 bytes, stops after ${stopAfter} of ${sent.length} bytes`, sent, r);
    },
  ];

  return {
    name: 'server: requests, paths, headers, specs, bodies, slow clients',
    async run(random: () => number): Promise<Result> {
      const result = await pick(random, cases)(random);
      if (result.outcome === 'finding') return result;
      if (internal.length > 0) return { ...result, outcome: 'finding', problem: `internal error logged: ${internal.splice(0).join('; ').slice(0, 300)}` };
      const health = await raw(request('GET', '/health', {}));
      if (health.status !== 200) return { ...result, outcome: 'finding', problem: `/health answered ${health.status} after this case` };
      return result;
    },
    async close() {
      await scheduler.drain(5000);
      await app.close();
    },
  };
}
