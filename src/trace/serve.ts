import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import Fastify from 'fastify';
import { KvpackError, UsageError } from '../errors.js';
import { readSmallFile } from '../util/file.js';
import { capConnections, checkHostHeader, DEFAULT_HTTP_LIMITS, httpOptions } from '../util/http.js';
import { Trace } from './read.js';

/** The built viewer (npm run build puts it in dist/viewer), found from src/ and dist/ alike. */
export function viewerDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/viewer');
}

export const DEFAULT_VIEW_PORT = 8160;
/** The largest trace kvpack view opens (4× the trace command's default bound). */
export const MAX_VIEW_BYTES = 256 * 2 ** 20;

export interface Viewer {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves the viewer and one trace file on the loopback interface only: the page at /, the trace
 * at /trace. The page loads nothing else, so it works offline. The file is read and checked as a
 * trace first (a regular file of at most MAX_VIEW_BYTES whose header the viewer can lay out), and
 * what was checked is what is served.
 */
export async function serveTrace(file: string, port = DEFAULT_VIEW_PORT): Promise<Viewer> {
  const text = await readTrace(file);
  const root = viewerDir();
  if (!fs.existsSync(path.join(root, 'index.html'))) throw new UsageError(`the viewer is not built (${root} is missing): run npm run build`);
  const host = '127.0.0.1';
  const app = Fastify(httpOptions(DEFAULT_HTTP_LIMITS));
  capConnections(app, DEFAULT_HTTP_LIMITS);
  checkHostHeader(app, host, (message) => message);
  await app.register(fastifyStatic, { root });
  app.get('/trace', (_request, reply) => reply.type('application/x-ndjson').send(text));
  try {
    await app.listen({ host, port });
  } catch (e) {
    throw new UsageError(`cannot listen on 127.0.0.1:${port}: ${(e as Error).message}`);
  }
  const address = app.server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  return { url: `http://127.0.0.1:${bound}/`, close: () => app.close() };
}

/** The trace's text, refused with one line naming the file unless it parses as a trace. */
async function readTrace(file: string): Promise<string> {
  let text: string | undefined;
  try {
    text = await readSmallFile(file, MAX_VIEW_BYTES);
    if (text !== undefined) Trace.parse(text);
  } catch (e) {
    if (!(e instanceof KvpackError)) throw e;
    throw new UsageError(e.message.startsWith(`${file}: `) ? e.message : `${file}: ${e.message}`);
  }
  if (text === undefined) throw new UsageError(`${file}: no such trace file`);
  return text;
}
