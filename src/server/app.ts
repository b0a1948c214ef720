import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { BusyError, CancelledError, LimitError, NumericError, RequestError, UsageError } from '../errors.js';
import { capConnections, checkHostHeader, DEFAULT_HTTP_LIMITS, httpOptions, type HttpLimits } from '../util/http.js';
import type { Model } from '../engine/model.js';
import type { StepLogprobs, TokenLogprob } from '../engine/generation.js';
import type { ChatTemplate } from './chat.js';
import type { Scheduler, SchedulerRequest, SchedulerResult } from './scheduler.js';
import { serverMetrics } from './metrics.js';
import { CHAT_UNSUPPORTED, chatSchema, COMPLETION_UNSUPPORTED, completionSchema, refuseFields, samplingOptions, type ChatBody, type CompletionBody } from './schema.js';

export interface AppOptions {
  model: Model;
  scheduler: Scheduler;
  chatTemplate: ChatTemplate;
  maxKvBytes: number;
  /** Required as `Authorization: Bearer KEY` on every route but /health and /metrics when set. */
  apiKey?: string;
  /** Largest request body in bytes. */
  bodyLimit?: number;
  /** The address the server listens on: on loopback, requests must name it in their Host header. */
  host?: string;
  /** Slow clients and connection count (default DEFAULT_HTTP_LIMITS). */
  limits?: HttpLimits;
  /** Where errors that are not the client's are told (the client gets "internal error"); default stderr. */
  logError?: (error: Error) => void;
  /** Tokens generated when a request sets no max_tokens (less if the context is shorter). */
  defaultMaxTokens?: number;
}

/** The OpenAI error body: {"error": {"message", "type", "param", "code"}}. */
interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/**
 * The HTTP face of the scheduler: OpenAI's /v1/completions, /v1/chat/completions and /v1/models, plus
 * /health and Prometheus /metrics. Every error a client can cause is a 4xx with an OpenAI error body.
 */
export function createApp(options: AppOptions): FastifyInstance {
  const { model, scheduler, chatTemplate } = options;
  const id = model.name;
  const created = Math.floor(Date.now() / 1000);
  const defaultMaxTokens = options.defaultMaxTokens ?? 256;
  const metrics = serverMetrics(scheduler, options.maxKvBytes);
  const limits = options.limits ?? DEFAULT_HTTP_LIMITS;
  const logError = options.logError ?? ((e: Error) => process.stderr.write(`kvpack serve: internal error: ${e.stack ?? e.message}\n`));
  const maxPromptChars = promptCharBound(model);
  const app = Fastify({
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    ...httpOptions(limits),
    // close() ends every connection: callers drain the scheduler first (see Scheduler.drain)
    forceCloseConnections: true,
    // a "__proto__" or "constructor.prototype" key is dropped, not a reason to call the body invalid JSON
    onProtoPoisoning: 'remove',
    onConstructorPoisoning: 'remove',
    // reject wrong types instead of coercing them ("5" is not an integer)
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false, allowUnionTypes: true } },
  });

  capConnections(app, limits);
  app.setErrorHandler((error: FastifyError, _request, reply) => {
    const [status, body] = toClient(error);
    void reply.code(status).send(body);
  });
  app.setNotFoundHandler((request, reply) => {
    void reply.code(404).send(errorBody(`no route ${request.method} ${request.url}`, 'invalid_request_error', null, 'not_found'));
  });
  if (options.host !== undefined) checkHostHeader(app, options.host, (message) => errorBody(message, 'invalid_request_error', null, 'misdirected_request'));
  if (options.apiKey) {
    const key = sha256(options.apiKey);
    // decided on the route the router matched (any spelling of a path reaches the same one); unknown paths need the key too
    app.addHook('onRequest', async (request) => {
      if (OPEN_ROUTES.has(request.routeOptions.url ?? '')) return;
      const given = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1];
      if (given === undefined) throw new RequestError('no API key: send "Authorization: Bearer KEY"', 401, 'missing_api_key');
      // equal-length digests compared in constant time: neither the key nor its length leaks through timing
      if (!timingSafeEqual(sha256(given), key)) throw new RequestError('the API key is wrong', 401, 'invalid_api_key');
    });
  }

  app.get('/health', async (_request, reply) => {
    if (scheduler.draining) return reply.code(503).send({ status: 'draining' });
    return { status: 'ok' };
  });
  app.get('/metrics', async (_request, reply) => {
    return reply.type(metrics.contentType).send(await metrics.metrics());
  });
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{ id, object: 'model', created, owned_by: 'kvpack' }],
  }));

  // unimplemented and unknown fields are refused before the schema checks the rest
  const completionFields = async (request: FastifyRequest) => refuseFields(request.body, completionSchema, COMPLETION_UNSUPPORTED);
  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionSchema }, preValidation: completionFields }, async (request, reply) => {
    const body = request.body;
    checkModel(body.model);
    const raw = Array.isArray(body.prompt) && typeof body.prompt[0] === 'string' ? (body.prompt[0] as string) : body.prompt;
    const prompt = typeof raw === 'string' ? await encode(raw, model.tokenizer.addBosByDefault) : checkIds(raw as number[]);
    const logprobs = completionLogprobs();
    const format = {
      object: 'text_completion',
      idPrefix: 'cmpl-',
      first: undefined,
      piece: (text: string, lp?: StepLogprobs[]) => ({ text, index: 0, logprobs: lp ? logprobs(lp) : null, finish_reason: null }),
      last: (finish: string, lp?: StepLogprobs[]) => ({ text: '', index: 0, logprobs: lp ? logprobs(lp) : null, finish_reason: finish }),
      whole: (r: SchedulerResult) => ({ text: r.text, index: 0, logprobs: r.logprobs ? logprobs(r.logprobs) : null, finish_reason: r.finishReason }),
    };
    return respond(reply, body, prompt, body.max_tokens, body.logprobs ?? undefined, format);
  });

  const chatFields = async (request: FastifyRequest) => refuseFields(request.body, chatSchema, CHAT_UNSUPPORTED);
  app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: chatSchema }, preValidation: chatFields }, async (request, reply) => {
    const body = request.body;
    checkModel(body.model);
    if (body.top_logprobs != null && body.logprobs !== true) {
      throw new RequestError('top_logprobs needs "logprobs": true', 400, 'invalid_value', 'top_logprobs');
    }
    const messages = body.messages.map((m) => ({
      role: m.role,
      content: typeof m.content === 'string' ? m.content : m.content.map((part) => part.text).join(''),
    }));
    const text = chatTemplate.render(messages);
    const startsWithBos = chatTemplate.bosToken !== '' && text.startsWith(chatTemplate.bosToken);
    const prompt = await encode(text, model.tokenizer.addBosByDefault && !startsWithBos);
    const format = {
      object: 'chat.completion.chunk',
      idPrefix: 'chatcmpl-',
      first: { index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null },
      piece: (content: string, lp?: StepLogprobs[]) => ({ index: 0, delta: { content }, logprobs: lp ? chatLogprobs(lp) : null, finish_reason: null }),
      last: (finish: string, lp?: StepLogprobs[]) => ({ index: 0, delta: {}, logprobs: lp ? chatLogprobs(lp) : null, finish_reason: finish }),
      whole: (r: SchedulerResult) => ({
        index: 0, message: { role: 'assistant', content: r.text }, logprobs: r.logprobs ? chatLogprobs(r.logprobs) : null, finish_reason: r.finishReason,
      }),
    };
    const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : undefined;
    return respond(reply, body, prompt, body.max_completion_tokens ?? body.max_tokens, logprobs, format);
  });

  /** An error as the client sees it; errors that are not the client's are logged here and reach it as "internal error". */
  function toClient(error: Error): [number, ErrorBody] {
    const { status, body } = errorResponse(error);
    if (status === 500) logError(error);
    return [status, body];
  }

  /** How one endpoint shapes its choices; the rest of a response is the same for both. */
  interface Format {
    object: string;
    idPrefix: string;
    first: object | undefined;
    /** `logprobs`: the tokens since the last chunk, when the request asks for logprobs. */
    piece(text: string, logprobs?: StepLogprobs[]): object;
    last(finish: string, logprobs?: StepLogprobs[]): object;
    whole(result: SchedulerResult): object;
  }

  /** `logprobs`: alternatives listed per token, when the request asks for logprobs. */
  async function respond(
    reply: FastifyReply, body: CompletionBody | ChatBody, prompt: number[],
    maxTokens: number | null | undefined, logprobs: number | undefined, format: Format,
  ): Promise<unknown> {
    const responseId = format.idPrefix + randomUUID().replaceAll('-', '');
    const head = { id: responseId, created: Math.floor(Date.now() / 1000), model: id };
    const abort = new AbortController();
    const schedulerRequest: SchedulerRequest = {
      prompt,
      maxTokens: maxTokens ?? Math.max(1, Math.min(defaultMaxTokens, model.config.maxContext - prompt.length)),
      // OpenAI's defaults; the other samplers are off unless the request sets them
      temperature: 1,
      topP: 1,
      seed: randomSeed(),
      ...samplingOptions(body),
      logprobs,
      stop: typeof body.stop === 'string' ? [body.stop] : body.stop ?? [],
      cache: body.kv_cache,
      signal: abort.signal,
    };
    // a client that goes away frees its session at once
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) abort.abort();
    });

    if (!body.stream) {
      const result = await scheduler.submit(schedulerRequest);
      const object = format.object.replace('.chunk', '');
      return reply.send({ ...head, object, choices: [format.whole(result)], usage: usage(result), kv_cache: result.kvCache });
    }

    const send = (data: object) => reply.raw.write(`data: ${JSON.stringify(data)}\n\n`);
    const includeUsage = body.stream_options?.include_usage === true;
    const chunk = (choice: object | undefined, extra: object = {}) =>
      send({ ...head, object: format.object, choices: choice ? [choice] : [], ...(includeUsage ? { usage: null } : {}), ...extra });
    // a token's logprobs ride on the chunk that carries its text (held back while it may be part of a character or stop string)
    const pending: StepLogprobs[] = [];
    const take = () => (logprobs === undefined ? undefined : pending.splice(0));
    schedulerRequest.onText = (text, lp) => {
      if (lp) pending.push(lp);
      if (text) chunk(format.piece(text, take()));
    };
    const done = scheduler.submit(schedulerRequest); // throws here, before any header is sent, if the request cannot run
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    if (format.first) chunk(format.first);
    try {
      const result = await done;
      // usage and kv_cache ride on the last choice chunk too, so every final response carries them
      chunk(format.last(result.finishReason, take()), { usage: usage(result), kv_cache: result.kvCache });
      if (includeUsage) send({ ...head, object: format.object, choices: [], usage: usage(result), kv_cache: result.kvCache });
      reply.raw.write('data: [DONE]\n\n');
    } catch (e) {
      if (!(e instanceof CancelledError && abort.signal.aborted)) send(toClient(e as Error)[1]);
    }
    reply.raw.end();
    return reply;
  }

  function checkModel(name: string): void {
    if (name !== id) { // never the path: a client could test guesses about the server's files
      throw new RequestError(`the model "${name}" does not exist; this server runs "${id}"`, 404, 'model_not_found', 'model');
    }
  }

  async function encode(text: string, addBos: boolean): Promise<number[]> {
    // tokenizing runs on the event loop: text that cannot fit the context is refused before it is read,
    // and a long one is counted a slice at a time, the other streams' steps running in between
    if (text.length > maxPromptChars) {
      throw new LimitError(`the prompt (${text.length} characters) cannot fit the model's context of ${model.config.maxContext} tokens (at most ${maxPromptChars} characters)`);
    }
    if (text.length > SLICE_CHARS) await countInSlices(text);
    const ids = model.tokenizer.encode(text, { addBos });
    if (ids.length > 0) return ids;
    if (model.tokenizer.bos === undefined) throw new RequestError('the prompt is empty and the model has no BOS token to start from', 400, 'empty_prompt', 'prompt');
    return [model.tokenizer.bos];
  }

  /**
   * Refuses a prompt whose tokens, counted slice by slice (cut before a space, never inside a
   * surrogate pair), pass the context by more than cutting can add (a few tokens per cut), so that
   * the whole is tokenized at once only when it holds about a context of tokens or fewer.
   */
  async function countInSlices(text: string): Promise<void> {
    const context = model.config.maxContext;
    let tokens = 0;
    let slices = 0;
    for (let at = 0; at < text.length; slices++) {
      let end = Math.min(text.length, at + SLICE_CHARS);
      if (end < text.length) {
        const space = text.lastIndexOf(' ', end);
        if (space > at) end = space;
        else if (/[\udc00-\udfff]/.test(text[end]!)) end--;
      }
      tokens += model.tokenizer.encode(text.slice(at, end), { addBos: false }).length;
      at = end;
      if (tokens - SLICE_SLACK * (slices + 1) > context) {
        throw new LimitError(`the prompt (more than ${context} tokens in its first ${at} characters) exceeds the model's context of ${context} tokens`);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  function checkIds(ids: number[]): number[] {
    const vocab = model.config.vocabSize;
    const bad = ids.find((t) => t >= vocab);
    if (bad !== undefined) throw new RequestError(`token id ${bad} is outside the vocabulary (0..${vocab - 1})`, 400, 'invalid_token', 'prompt');
    return ids;
  }

  return app;
}

/** Characters of a long prompt tokenized at a time while it is counted (a few ms each). */
const SLICE_CHARS = 4096;
/** Tokens a cut between slices may add to the count (a prefix space, a word or merge split in two). */
const SLICE_SLACK = 4;

/** Routes that answer without the API key (documented in kvpack serve --help). */
const OPEN_ROUTES = new Set(['/health', '/metrics']);

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

/**
 * The most characters a prompt that fits the context can have: every token's text is at most the
 * longest one in the vocabulary, and a normalizer may merge a few characters into one (NFC composes
 * a letter and its marks), so four times that per token. Far above real text, and computed once.
 */
export function promptCharBound(model: Model): number {
  let longest = 1;
  for (let id = 0; id < model.config.vocabSize; id++) longest = Math.max(longest, model.tokenizer.decode([id]).length);
  return model.config.maxContext * longest * 4;
}

function usage(r: SchedulerResult) {
  return { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens };
}

/** OpenAI's chat shape of logprobs: each token's text, bytes (null for part of a character) and alternatives. */
function chatLogprobs(tokens: readonly StepLogprobs[]) {
  const entry = (t: TokenLogprob) => ({ token: t.text, logprob: t.logprob, bytes: t.text.includes('\uFFFD') ? null : [...Buffer.from(t.text, 'utf8')] });
  return { content: tokens.map((t) => ({ ...entry(t), top_logprobs: t.top.map(entry) })), refusal: null };
}

/**
 * OpenAI's legacy completions shape of logprobs, for one response: parallel lists, the alternatives
 * a map from text to logprob (the more likely kept when two tokens read the same), and each token's
 * offset in the generated text, counted on across a stream's chunks.
 */
function completionLogprobs() {
  let offset = 0;
  return (tokens: readonly StepLogprobs[]) => ({
    tokens: tokens.map((t) => t.text),
    token_logprobs: tokens.map((t) => t.logprob),
    top_logprobs: tokens.map((t) => {
      const top: Record<string, number> = Object.create(null) as Record<string, number>;
      for (const alt of t.top) if (!Object.hasOwn(top, alt.text)) top[alt.text] = alt.logprob;
      return top;
    }),
    text_offset: tokens.map((t) => (offset += t.text.length) - t.text.length),
  });
}

function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}

function errorBody(message: string, type: string, param: string | null, code: string | null): ErrorBody {
  return { error: { message, type, param, code } };
}

/** Fastify's own refusals of a request, whose messages speak of the request alone. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'body_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_content_length',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_json',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_json',
};

/**
 * Maps any error to an HTTP status and OpenAI error body; what the client did wrong is a 4xx naming it.
 * Only the project's own request, usage and limit messages reach the client: any other error (a
 * file the server read, a failure inside) is "internal error", so no path, file content or errno
 * text ever leaves the server.
 */
export function errorResponse(error: Error): { status: number; body: ErrorBody } {
  const e = error as FastifyError & { validation?: { instancePath: string; params: Record<string, unknown> }[] };
  if (e.validation && e.validation.length > 0) {
    const first = e.validation[0]!;
    const missing = first.params.missingProperty as string | undefined;
    const param = (first.instancePath.replace(/^\//, '').replaceAll('/', '.') || missing) ?? null;
    return { status: 400, body: errorBody(`invalid request: ${e.message}`, 'invalid_request_error', param, 'invalid_value') };
  }
  if (error instanceof RequestError) {
    const type = error.status === 401 ? 'authentication_error' : error.status === 404 ? 'not_found_error' : 'invalid_request_error';
    return { status: error.status, body: errorBody(error.message, type, error.param, error.code) };
  }
  if (error instanceof BusyError) {
    const code = error.status === 429 ? 'queue_full' : 'shutting_down';
    return { status: error.status, body: errorBody(error.message, error.status === 429 ? 'rate_limit_error' : 'server_error', null, code) };
  }
  if (error instanceof LimitError) return { status: 400, body: errorBody(error.message, 'invalid_request_error', null, 'context_length_exceeded') };
  if (error instanceof CancelledError) return { status: 503, body: errorBody(error.message, 'server_error', null, 'cancelled') };
  if (error instanceof UsageError) return { status: 400, body: errorBody(error.message, 'invalid_request_error', null, null) };
  if (error instanceof NumericError) return { status: 500, body: errorBody(error.message, 'server_error', null, 'numeric_error') };
  // Fastify's refusals, and a body the client stopped sending ("aborted"): the status, and words only when they are Fastify's own
  if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) {
    const code = typeof e.code === 'string' && Object.hasOwn(FASTIFY_CODES, e.code) ? FASTIFY_CODES[e.code] : undefined;
    return { status: e.statusCode, body: errorBody(code ? e.message : 'bad request', 'invalid_request_error', null, code ?? 'bad_request') };
  }
  return { status: 500, body: errorBody('internal error (please report)', 'server_error', null, 'internal_error') };
}
