import type { ServerOptions } from 'node:http';
import type { FastifyInstance } from 'fastify';

/** How long a client may take, and how many may be connected at once (kvpack serve, kvpack view). */
export interface HttpLimits {
  /** Open connections at most; more are closed as they arrive. */
  maxConnections: number;
  /** Milliseconds for a client to send its request headers. */
  headersTimeoutMs: number;
  /** Milliseconds for a client to send its whole request (headers and body). */
  requestTimeoutMs: number;
  /** Milliseconds an idle keep-alive connection stays open. */
  keepAliveTimeoutMs: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = { maxConnections: 256, headersTimeoutMs: 10_000, requestTimeoutMs: 30_000, keepAliveTimeoutMs: 5_000 };

/**
 * Fastify options that hold slow clients to the limits: Node checks the header and request
 * deadlines every `connectionsCheckingInterval`, so it is a fraction of the shorter one. The time a
 * response takes is not limited (a long generation streams for as long as it runs).
 */
export function httpOptions(limits: HttpLimits): { requestTimeout: number; keepAliveTimeout: number; http: ServerOptions } {
  return {
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    http: {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: Math.max(100, Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4),
    },
  };
}

/** Applies what the options cannot say: the connection cap. Call before listen. */
export function capConnections(app: FastifyInstance, limits: HttpLimits): void {
  app.server.maxConnections = limits.maxConnections;
}

const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];

/** Whether a listen address is the loopback interface only. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/**
 * Refuses requests whose Host header is not this loopback server's own name and port (421), so a
 * web page whose DNS name was rebound to 127.0.0.1 cannot reach it from a browser. Only for a
 * server bound to loopback: one bound elsewhere is reached under names it cannot know.
 */
export function checkHostHeader(app: FastifyInstance, host: string, refuse: (message: string) => unknown): void {
  if (!isLoopback(host)) return;
  app.addHook('onRequest', async (request, reply) => {
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : undefined;
    const given = (request.headers.host ?? '').toLowerCase();
    const names = [...LOOPBACK_NAMES, ...(/^127\./.test(host) ? [host] : [])];
    const allowed = names.flatMap((n) => (port === 80 ? [n, `${n}:80`] : [`${n}:${port}`]));
    if (allowed.includes(given)) return;
    return reply.code(421).send(refuse(`this server answers only to ${allowed.join(', ')} in the Host header`));
  });
}
