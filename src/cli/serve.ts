import { UsageError } from '../errors.js';
import { createApp } from '../server/app.js';
import { loadChatTemplate } from '../server/chat.js';
import { Scheduler } from '../server/scheduler.js';
import { bytesOption, intOption, MODEL_OPTIONS, noPositionals, parse } from './args.js';
import { loadModelFromOptions } from './load.js';

const HELP = `Usage: kvpack serve [--model M] [--host 127.0.0.1] [--port 8080] [--cache SPEC] [--max-kv-bytes N]
                    [--parallel K] [--queue Q] [--api-key KEY] [--prefill-chunk N] [--threads T]
                    [--attention exact|fast] [--matmul fast|exact]

An OpenAI-compatible HTTP server (POST /v1/completions, /v1/chat/completions; GET /v1/models,
/health, /metrics) where each request may choose its KV cache ("kv_cache": SPEC) and all sessions
share one KV byte budget. Requests take OpenAI's fields, llama-server's samplers (top_k, min_p,
repeat_penalty, repeat_last_n) and logprobs; a field it does not implement (n > 1, echo, tools, …) or
does not know gets 400 naming it (docs/serve.md).
  --model M          a model directory, .gguf or llama2.c .bin, or a Hugging Face repo id
  --host H           address to bind (default 127.0.0.1, loopback only; there, requests must name
                     localhost, 127.0.0.1 or [::1] with the port in their Host header)
  --port P           port (default 8080; 0 picks a free one)
  --cache SPEC       cache for requests that do not name one (default full: every token, as fp16); the
                     one place for kvquant(calib=FILE): a request's kv_cache may not name a file
  --max-kv-bytes N   budget for the sum of all sessions' real KV bytes (default 1GiB; e.g. 512MiB, 2G)
  --parallel K       sessions running at once, decoded together (default 8)
  --queue Q          requests that may wait for a session; more get 429 (default 64)
  --api-key KEY      require "Authorization: Bearer KEY" on every route but /health and /metrics
                     (default: KVPACK_API_KEY, else none)
  --max-body N       largest request body (default 1MiB)
  --prefill-chunk N  prompt tokens prefilled per step between the others' decode steps (default 32)
  --attention M      how packed KV caches (int, kvquant) compute attention: exact (default) or fast
  --matmul MODE      quantized weights × activations: fast (default: 8-bit activations, as llama.cpp) or exact
Connections: at most 256 at once; headers within 10 s, a whole request within 30 s.
SIGTERM or SIGINT: stop accepting, let running requests finish (30 s at most), exit 0.
`;

const SHUTDOWN_GRACE_MS = 30_000;

export async function serveCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('serve', argv, {
    ...MODEL_OPTIONS,
    host: { type: 'string' },
    port: { type: 'string' },
    cache: { type: 'string' },
    'max-kv-bytes': { type: 'string' },
    parallel: { type: 'string' },
    queue: { type: 'string' },
    'api-key': { type: 'string' },
    'max-body': { type: 'string' },
    'prefill-chunk': { type: 'string' },
  });
  if (values.help) return void process.stdout.write(HELP);
  noPositionals('serve', positionals);
  const maxKvBytes = bytesOption('max-kv-bytes', values['max-kv-bytes']) ?? 2 ** 30;
  const parallel = intOption('parallel', values.parallel, 8, 1);
  const queue = intOption('queue', values.queue, 64, 0);
  const port = intOption('port', values.port, 8080, 0);
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  const bodyLimit = bytesOption('max-body', values['max-body']) ?? 2 ** 20;
  const chunkSize = intOption('prefill-chunk', values['prefill-chunk'], 32, 1);
  const host = values.host ?? '127.0.0.1';
  const apiKey = values['api-key'] ?? process.env.KVPACK_API_KEY;
  if (apiKey === '') throw new UsageError('--api-key (or KVPACK_API_KEY) is empty: give a key, or leave it out to serve without one');

  const model = await loadModelFromOptions(values);
  const scheduler = new Scheduler(model, { cache: values.cache ?? 'full', maxKvBytes, parallel, queue, chunkSize });
  const chatTemplate = await loadChatTemplate(model.source, model.format);
  const app = createApp({ model, scheduler, chatTemplate, maxKvBytes, apiKey, bodyLimit, host });
  const address = await app.listen({ host, port });
  process.stderr.write(`kvpack serve: ${model.name} on ${address} (chat template: ${chatTemplate.origin}, KV budget ${maxKvBytes} bytes)\n`);

  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  process.stderr.write('kvpack serve: shutting down\n');
  // new requests get 503 while the ones already taken finish (or are cancelled after the grace period)
  await scheduler.drain(SHUTDOWN_GRACE_MS);
  await app.close();
  await model.close();
}
