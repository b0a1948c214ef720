import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import OpenAI from 'openai';
import type { FastifyInstance } from 'fastify';
import { loadModel, type Model } from '../../src/engine/model.js';
import { createApp } from '../../src/server/app.js';
import { loadChatTemplate } from '../../src/server/chat.js';
import { Scheduler, type SchedulerOptions } from '../../src/server/scheduler.js';
import type { HttpLimits } from '../../src/util/http.js';

export interface TestServer {
  url: string;
  client: OpenAI;
  scheduler: Scheduler;
  app: FastifyInstance;
  model: Model;
  close(): Promise<void>;
}

/** A server on a free loopback port (checking the Host header, as kvpack serve does), and an official OpenAI client pointed at it (no retries). */
export async function startServer(
  modelPath: string,
  options: Partial<SchedulerOptions> & { apiKey?: string; bodyLimit?: number; limits?: HttpLimits; logError?: (e: Error) => void } = {},
): Promise<TestServer> {
  const model = await loadModel(modelPath, { threads: 1 });
  const maxKvBytes = options.maxKvBytes ?? 64 * 2 ** 20;
  const scheduler = new Scheduler(model, { cache: options.cache ?? 'full+fp16', maxKvBytes, parallel: options.parallel ?? 4, queue: options.queue ?? 16, chunkSize: options.chunkSize });
  const chatTemplate = await loadChatTemplate(model.source, model.format);
  const app = createApp({ model, scheduler, chatTemplate, maxKvBytes, apiKey: options.apiKey, bodyLimit: options.bodyLimit, host: '127.0.0.1', limits: options.limits, logError: options.logError });
  const address = await app.listen({ host: '127.0.0.1', port: 0 });
  const client = new OpenAI({ baseURL: `${address}/v1`, apiKey: options.apiKey ?? 'none', maxRetries: 0 });
  return {
    url: address, client, scheduler, app, model,
    async close() {
      await app.close();
      await model.close();
    },
  };
}

/** Starts `kvpack serve` from the built CLI on a free port with `args`; resolves once it says where it listens. */
export async function spawnServe(args: string[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [path.resolve('dist/cli/main.js'), 'serve', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
      const m = / on (http:\/\/\S+)/.exec(stderr);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`kvpack serve exited ${code}: ${stderr}`)));
  });
  return { child, url };
}

/** Streams a completion and returns its text and the final usage chunk. */
export async function streamCompletion(client: OpenAI, body: Omit<OpenAI.CompletionCreateParamsStreaming, 'stream'>) {
  const stream = await client.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage: OpenAI.CompletionUsage | undefined | null;
  let finish: string | undefined;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      text += c.text;
      if (c.finish_reason) finish = c.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, usage, finish };
}

/**
 * One request written byte for byte on a fresh socket (clients normalise URLs and Host headers; an
 * attacker does not), read until the server closes the connection.
 */
export async function rawRequest(url: string, head: string, body = ''): Promise<{ status: number; text: string }> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  socket.write(`${head.replace(/\n/g, '\r\n')}${body}`);
  let text = '';
  socket.on('data', (d: Buffer) => (text += d.toString()));
  await new Promise((resolve) => socket.on('close', resolve));
  return { status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0), text };
}

/** A raw request's head: method, target and headers, then an empty line; the Host is the server's own unless given. */
export function head(url: string, method: string, target: string, headers: Record<string, string> = {}, body = ''): string {
  const all: Record<string, string> = { host: new URL(url).host, connection: 'close', ...headers };
  if (body) Object.assign(all, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
  return `${method} ${target} HTTP/1.1\n${Object.entries(all).map(([k, v]) => `${k}: ${v}`).join('\n')}\n\n`;
}
