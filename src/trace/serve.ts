import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import Fastify from 'fastify';
import { UsageError } from '../errors.js';

/** The built viewer (npm run build puts it in dist/viewer), found from src/ and dist/ alike. */
export function viewerDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/viewer');
}

export const DEFAULT_VIEW_PORT = 8160;

export interface Viewer {
  url: string;
  close(): Promise<void>;
}

/**
 * Serves the viewer and one trace file on the loopback interface only: the page at /, the trace
 * at /trace. The page loads nothing else, so it works offline.
 */
export async function serveTrace(file: string, port = DEFAULT_VIEW_PORT): Promise<Viewer> {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new UsageError(`${file}: no such trace file`);
  const root = viewerDir();
  if (!fs.existsSync(path.join(root, 'index.html'))) throw new UsageError(`the viewer is not built (${root} is missing): run npm run build`);
  const app = Fastify();
  await app.register(fastifyStatic, { root });
  app.get('/trace', (_request, reply) => reply.type('application/x-ndjson').send(fs.createReadStream(file)));
  try {
    await app.listen({ host: '127.0.0.1', port });
  } catch (e) {
    throw new UsageError(`cannot listen on 127.0.0.1:${port}: ${(e as Error).message}`);
  }
  const address = app.server.address();
  const bound = typeof address === 'object' && address ? address.port : port;
  return { url: `http://127.0.0.1:${bound}/`, close: () => app.close() };
}
