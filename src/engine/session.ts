import { createCache } from '../cache/build.js';
import { ATTENTION_MODES, type AttentionMode } from '../cache/codec.js';
import type { KVCache } from '../cache/kvcache.js';
import { parseSpec } from '../cache/registry.js';
import { KvLimitError, LimitError, NumericError, UsageError } from '../errors.js';
import { Generation } from './generation.js';
import { Activations, forward, forwardBatch } from '../model/forward.js';
import type { Kernels } from '../kernels/api.js';
import type { ModelConfig, ModelIdentity } from '../model/config.js';
import type { Weights } from '../model/weights.js';
import { logSoftmax, SAMPLING_PARAMS, type SamplingOptions } from './sample.js';
import { formatBytes } from '../util/progress.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { applyDefaults, bool, findIssue, int, number, oneOf, optional, param, text, type Params } from '../util/schema.js';

/** What a session runs: a loaded model's config, weights in kernel memory and tokenizer (a `Model` is one). */
export interface RunnableModel {
  readonly config: ModelConfig;
  /** The first layer group's memory (`weights.groups.first.kernels`), which holds the embedding and the classifier. */
  readonly kernels: Kernels;
  /** Every layer group's weights, each in its kernel memory. */
  readonly weights: Weights;
  readonly tokenizer: Tokenizer;
  /** What a calibration file is checked against (see Model.identity). */
  identity(): ModelIdentity;
  /** The context the model's memory plan was made for: a session's first cache allocation (absent: min(trained context, 1024)). */
  readonly context?: number;
  /** True once the model's kernels are closed (Model.close): nothing may run on it after that. */
  readonly closed?: boolean;
  /** How its sessions' packed caches compute attention unless a session says (absent: DEFAULT_ATTENTION). */
  readonly attention?: AttentionMode;
}

export interface SessionOptions {
  /** Cache spec, e.g. 'full', 'h2o(budget=0.2)' or 'window(sinks=4,recent=252)+fp16'. */
  cache?: string;
  /** Tokens per forward call during prefill and chunked scoring. */
  chunkSize?: number;
  /**
   * Run past the model's trained context with a fixed-budget cache: RoPE positions become ranks
   * among the held tokens (StreamingLLM, H2O's streaming variant); keys are stored before RoPE.
   */
  streaming?: boolean;
  /**
   * Bytes the cache may hold (as `cache.bytes()` counts them). Before tokens would take it past that,
   * a policy that evicts is made to evict early, down to what fits; any other cache stops with a
   * KvLimitError before anything is written.
   */
  maxKvBytes?: number;
  /**
   * Tokens to allocate cache room for at once (default: min(trained context, 1024), doubled as needed).
   * A long context reserved up front is allocated once instead of through every doubling.
   */
  context?: number;
  /** How packed caches compute attention: 'exact' or 'fast' (default: the model's, see LoadOptions.attention). */
  attention?: AttentionMode;
}

/** Sampling (SamplingOptions) goes through llama.cpp's chain: penalties → topK → topP → minP → temperature. */
export interface GenerateOptions extends Partial<SamplingOptions> {
  maxTokens?: number;
  /** Generation ends before any of these strings; the string itself is not emitted. */
  stop?: string[];
  /** Prepend BOS when the prompt is text (default: what the tokenizer does). */
  addBos?: boolean;
  signal?: AbortSignal;
  /**
   * Called with the logits each token is sampled from, and the index in the history of the token they
   * follow (as ScoreOptions.onLogits numbers them); the view is reused. `kvpack generate --compare` uses it.
   */
  onLogits?: (index: number, logits: Float32Array) => void;
}

export interface ScoreOptions {
  /**
   * 'chunked': feed chunkSize tokens per forward call (fast; perplexity as the GPTQ/KVQuant scripts compute it).
   * 'decode': feed one token at a time, as generation does.
   */
  mode?: 'chunked' | 'decode';
  /** Called with each position's full next-token logits (for fidelity metrics); the view is reused. */
  onLogits?: (index: number, logits: Float32Array) => void;
  onProgress?: (tokensDone: number) => void;
}

const SESSION_PARAMS = {
  cache: text({ default: 'full', doc: 'cache spec' }),
  chunkSize: int({ min: 1, default: 128, doc: 'tokens per forward call' }),
  streaming: bool({ default: false, doc: 'RoPE positions as ranks among the held tokens' }),
  maxKvBytes: optional(number({ min: 0, exclusiveMin: true, doc: 'bytes the cache may hold' })),
  context: optional(int({ min: 1, doc: 'tokens to allocate cache room for at once' })),
  attention: oneOf(ATTENTION_MODES, { optional: true, doc: 'how packed caches compute attention' }),
};

const GENERATE_PARAMS = {
  maxTokens: int({ min: 0, default: 256, doc: 'tokens to generate' }),
  ...SAMPLING_PARAMS,
  stop: param<readonly string[]>((v) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : 'must be a list of strings'), {
    default: [],
    doc: 'stop strings',
  }),
  addBos: optional(bool({ doc: 'prepend BOS' })),
  signal: optional(param<AbortSignal>((v) => (v instanceof AbortSignal ? undefined : 'must be an AbortSignal'), { doc: 'stops generation' })),
  onLogits: optional(param<(index: number, logits: Float32Array) => void>((v) => (typeof v === 'function' ? undefined : 'must be a function'), { doc: 'sees each step\'s logits' })),
};

/** Library options checked against their schema: a typed error names the first bad one. */
function checked<P extends Params>(schema: P, given: object, what: string) {
  if (typeof given !== 'object' || given === null) throw new UsageError(`${what} options must be an object`);
  const issue = findIssue(schema, given as Record<string, unknown>);
  if (issue?.kind === 'unknown') throw new UsageError(`${what}: unknown option "${issue.key}"; options are ${Object.keys(schema).join(', ')}`);
  if (issue?.kind === 'invalid') throw new UsageError(`${what}: ${issue.key} ${issue.problem}, got ${String(issue.value)}`);
  if (issue?.kind === 'missing') throw new UsageError(`${what}: ${issue.key} is required (${issue.doc})`);
  return applyDefaults(schema, given as Record<string, unknown>);
}

/** How long the last generate() took: its prompt and its generated tokens apart, as llama.cpp's timings print them. */
export interface GenerationTimings {
  /** Tokens of the prompt fed before the first token was sampled. */
  promptTokens: number;
  promptMs: number;
  /** Tokens sampled and emitted (an end-of-sequence token or a stop string is not counted). */
  generatedTokens: number;
  /** Sampling and feeding the generated tokens; time the consumer spends between pieces is not counted. */
  generationMs: number;
}

/** A conversation with a model: a token history and the cache that holds it. */
export class Session {
  readonly tokens: number[] = [];
  readonly cache: KVCache;
  /** The timings of the last generate() (updated as it runs); undefined before the first. */
  lastTimings: GenerationTimings | undefined;
  /** Activation buffers for chunks of chunkSize tokens, in every layer group's memory. */
  private readonly activations: Activations;
  private readonly chunkSize: number;
  private readonly streaming: boolean;
  private readonly maxKvBytes: number;
  /** What the session cannot do now: it is disposed, or a generation is running. */
  private busy: string | undefined;

  constructor(readonly model: RunnableModel, options: SessionOptions = {}) {
    const o = checked(SESSION_PARAMS, options, 'session');
    const spec = parseSpec(o.cache);
    this.chunkSize = o.chunkSize;
    const c = model.config;
    this.streaming = o.streaming;
    this.maxKvBytes = o.maxKvBytes ?? Infinity;
    // slots grow by doubling as needed; start from what the budget holds, not the whole context
    this.cache = createCache(model.weights.groups, c, spec, o.context ?? model.context ?? Math.min(c.maxContext, 1024), {
      streaming: this.streaming,
      stepTokens: this.chunkSize,
      model: () => model.identity(),
      attention: o.attention ?? model.attention,
    });
    try {
      this.activations = new Activations(model.weights, c, this.chunkSize);
    } catch (e) {
      this.cache.free();
      throw e;
    }
  }

  /**
   * Appends tokens and returns the logits after the last one (a view, valid until the next call).
   * The cache compresses once the tokens are in: a prompt is compressed as a whole.
   */
  feed(ids: readonly number[]): Float32Array {
    this.checkUsable();
    return this.feedTokens(ids);
  }

  private feedTokens(ids: readonly number[]): Float32Array {
    const steps = this.chunks(ids, this.activations);
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
    }
  }

  /**
   * `feed` one chunk per step, so a caller (the server) can interleave other sessions' work
   * between chunks; returns the logits after the last token when done. `activations` (chunks of
   * their maxChunk tokens) let sessions that prefill one at a time share one set of chunk buffers
   * (a Batch's).
   */
  *prefill(ids: readonly number[], activations: Activations = this.activations): Generator<void, Float32Array, void> {
    this.checkUsable();
    return yield* this.chunks(ids, activations);
  }

  private *chunks(ids: readonly number[], activations: Activations): Generator<void, Float32Array, void> {
    if (ids.length === 0) throw new UsageError('nothing to feed: the token list is empty');
    this.checkRoom(ids.length, 'feed fewer tokens');
    this.cache.setPromptLength(ids.length);
    const chunk = activations.maxChunk;
    let logits: Float32Array | undefined;
    for (let i = 0; i < ids.length; i += chunk) {
      if (i > 0) yield;
      logits = this.run(ids.slice(i, i + chunk), false, activations);
    }
    this.compress();
    return logits!;
  }

  /**
   * Streams generated text. The prompt (text or token ids) is appended to the history, then tokens
   * are sampled until maxTokens, an end-of-sequence token, or a stop string.
   */
  async *generate(prompt: string | readonly number[], options: GenerateOptions = {}): AsyncGenerator<string> {
    this.checkUsable();
    const o = checked(GENERATE_PARAMS, options, 'generate');
    this.busy = 'a generate() on this session is still running (finish it or break out of its loop first)';
    try {
      yield* this.generateTokens(prompt, o);
    } finally {
      if (this.busy !== DISPOSED) this.busy = undefined;
    }
  }

  private async *generateTokens(prompt: string | readonly number[], options: ReturnType<typeof checked<typeof GENERATE_PARAMS>>): AsyncGenerator<string> {
    const tok = this.model.tokenizer;
    const ids = typeof prompt === 'string'
      ? tok.encode(prompt, { addBos: options.addBos ?? (this.tokens.length === 0 ? tok.addBosByDefault : false) })
      : [...prompt];
    if (ids.length === 0) {
      if (tok.bos === undefined) throw new UsageError('the prompt is empty and the model has no BOS token to start from');
      ids.push(tok.bos);
    }
    const { maxTokens } = options;
    this.checkRoom(ids.length + maxTokens, 'shorten the prompt or generate fewer tokens (--max-tokens)');
    const generation = new Generation(tok, this.model.config.vocabSize, [...this.tokens, ...ids], options); // the penalties see the whole history
    const timings: GenerationTimings = { promptTokens: ids.length, promptMs: 0, generatedTokens: 0, generationMs: 0 };
    this.lastTimings = timings;
    let started = performance.now();
    let logits = this.feedTokens(ids);
    timings.promptMs = performance.now() - started;
    if (maxTokens === 0) return;
    for (;;) {
      if (options.signal?.aborted) {
        const rest = generation.end();
        if (rest) yield rest;
        return;
      }
      options.onLogits?.(this.tokens.length - 1, logits);
      started = performance.now(); // what onLogits does (generate --compare's reference run) is not counted
      const step = generation.step(logits);
      // fed before its text is yielded (the last token too): a consumer that stops at a yield leaves the history holding every token emitted
      if (step.token !== undefined) logits = this.feedTokens([step.token]);
      timings.generationMs += performance.now() - started;
      timings.generatedTokens = generation.produced;
      if (step.text) yield step.text;
      if (step.finish) return;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Log-probability of each token given the ones before it: result[i] = log p(ids[i+1] | ids[0..i]).
   * The session starts from its current history (usually empty).
   */
  score(ids: readonly number[], options: ScoreOptions = {}): Float64Array {
    this.checkUsable();
    const n = ids.length;
    const out = new Float64Array(Math.max(0, n - 1));
    if (n < 2) return out;
    this.checkRoom(n, 'score shorter sequences (ppl, eval: --ctx / ctx=)');
    const step = options.mode === 'decode' ? 1 : this.chunkSize;
    this.cache.setPromptLength(n);
    const vocab = this.model.config.vocabSize;
    const row = new Float64Array(vocab);
    for (let i = 0; i < n; i += step) {
      const chunk = ids.slice(i, Math.min(i + step, n));
      const logits = this.run(chunk, true);
      this.compress();
      for (let t = 0; t < chunk.length; t++) {
        const index = i + t;
        if (index + 1 >= n) break;
        const rowLogits = logits.subarray(t * vocab, (t + 1) * vocab);
        options.onLogits?.(index, rowLogits);
        out[index] = logSoftmax(rowLogits, row)[ids[index + 1]!]!;
      }
      options.onProgress?.(Math.min(i + step, n));
    }
    return out;
  }

  /** Forgets the history; the cache is emptied and reused. */
  reset(): void {
    this.checkUsable();
    this.tokens.length = 0;
    this.cache.reset();
  }

  /** Frees the cache and scratch memory; the session cannot be used afterwards. */
  dispose(): void {
    if (this.busy === DISPOSED) return;
    this.busy = DISPOSED;
    this.cache.free();
    this.activations.free();
  }

  /**
   * Feeds one token to each session in one forward pass (the weights are read once for all of them)
   * and returns their next-token logits, [sessions × vocab] in order: a view into the first group's
   * scratch (`activations` with rows for at least sessions.length tokens, a Batch's), valid until
   * its next use. Each cache compresses after its token.
   */
  static feedEach(sessions: readonly Session[], tokens: readonly number[], activations: Activations): Float32Array {
    const model = sessions[0]!.model;
    for (const [i, session] of sessions.entries()) {
      if (session.model !== model) throw new UsageError('feedEach: the sessions run different models');
      session.checkUsable();
      session.checkRoom(1, 'end the request sooner (max_tokens)');
      session.checkIds([tokens[i]!]);
      session.makeRoom(1);
    }
    const batch = sessions.map((session, i) => ({ cache: session.cache, ids: [tokens[i]!], positions: [session.tokens.length], allLogits: false }));
    const logits = forwardBatch(model.config, model.weights, activations, batch);
    const bad = firstNonFiniteRow(logits, model.config.vocabSize);
    if (bad >= 0) throw nonFinite(sessions[bad]!.tokens.length);
    for (const [i, session] of sessions.entries()) {
      session.tokens.push(tokens[i]!);
      session.compress();
    }
    return logits;
  }

  /** Compresses the cache, after a reconstruction pass when its policy scores that way (KVzip). */
  private compress(maxTokens?: number): void {
    const cache = this.cache;
    if (cache.policy.reconstructionDue?.(cache.heldSlots())) this.reconstruct();
    cache.compress(maxTokens);
  }

  /**
   * KVzip's scoring pass: chunk by chunk, a repeat prompt and held tokens (in position order) are fed
   * one at a time after the last position, so the policy sees each query's attention; each chunk's
   * tokens are dropped before the next.
   */
  private reconstruct(): void {
    const cache = this.cache;
    const policy = cache.policy;
    const started = performance.now();
    const mark = cache.mark();
    policy.beginReconstruction!(mark);
    const next = this.tokens.length;
    let fed = 0;
    for (const chunk of policy.reconstructionChunks!(cache.heldTokenPositions())) {
      const prompt = this.model.tokenizer.encode(chunk.prompt, { addBos: false });
      const ids = [...prompt, ...[...chunk.lead, ...chunk.positions].map((p) => this.tokens[p]!)];
      policy.beginChunk!(chunk);
      for (let i = 0; i < ids.length; i++) forward(this.model.config, this.model.weights, this.activations, cache, [ids[i]!], [next + i], false);
      cache.rollback(mark);
      fed += ids.length;
    }
    policy.endReconstruction!(fed, performance.now() - started);
  }

  private checkIds(ids: readonly number[]): void {
    const vocab = this.model.config.vocabSize;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new UsageError(`token id ${id} is outside the vocabulary (0..${vocab - 1})`);
    }
  }

  private run(ids: readonly number[], allLogits: boolean, activations: Activations = this.activations): Float32Array {
    if (this.busy === DISPOSED) throw new UsageError(`this session cannot be used: ${DISPOSED}`); // a generation still running
    if (this.model.closed) throw new UsageError(MODEL_CLOSED);
    this.checkIds(ids);
    const start = this.tokens.length;
    const positions = ids.map((_, i) => start + i);
    this.makeRoom(ids.length);
    const logits = forward(this.model.config, this.model.weights, activations, this.cache, ids, positions, allLogits);
    const bad = firstNonFiniteRow(logits, this.model.config.vocabSize);
    if (bad >= 0) throw nonFinite(start + (allLogits ? bad : ids.length - 1));
    this.tokens.push(...ids);
    return logits;
  }

  private checkUsable(): void {
    if (this.busy) throw new UsageError(`this session cannot be used: ${this.busy}`);
    if (this.model.closed) throw new UsageError(MODEL_CLOSED);
  }

  /** Keeps the cache under maxKvBytes with `n` more tokens: early eviction, or a KvLimitError before the forward pass. */
  private makeRoom(n: number): void {
    const cache = this.cache;
    const held = cache.bytes();
    const perToken = cache.bytesPerToken();
    const needed = held + n * perToken;
    if (needed <= this.maxKvBytes) return;
    const fixed = held - cache.meanLength() * perToken;
    const keep = Math.floor((this.maxKvBytes - fixed) / perToken) - n;
    const limit = formatBytes(this.maxKvBytes);
    if (!cache.policy.evicts) {
      throw new KvLimitError(
        `the cache ${cache.spec} would hold ${formatBytes(needed)} with ${n} more tokens, past maxKvBytes ${limit} (${Math.max(...cache.layerLengths())} tokens held); ` +
          'it never evicts: give it a budget, e.g. h2o(budget=…) or window(recent=…), or raise the limit',
        this.maxKvBytes, needed,
      );
    }
    if (keep < 1) {
      throw new KvLimitError(
        `the cache ${cache.spec} cannot take ${n} more tokens within maxKvBytes ${limit} (${formatBytes(perToken)} per token); raise the limit or feed fewer tokens at once`,
        this.maxKvBytes, needed,
      );
    }
    this.compress(keep);
  }

  /** `fix` says what the caller can do about too many tokens, besides streaming. */
  private checkRoom(more: number, fix: string): void {
    if (this.streaming) return; // positions are ranks among at most budget tokens
    const limit = this.model.config.maxContext;
    if (this.tokens.length + more > limit) {
      const recent = Math.max(1, limit - 4);
      throw new LimitError(
        `${this.tokens.length + more} tokens (${this.tokens.length} held + ${more} requested) exceed the model's context of ${limit}; ` +
          `${fix}, or stream with a fixed-budget cache that fits it (--streaming --cache "window(sinks=4,recent=${recent})")`,
      );
    }
  }
}

const BATCH_PARAMS = {
  rows: int({ min: 1, doc: 'sessions decoded together in one step' }),
  chunkSize: int({ min: 1, doc: 'prompt tokens per prefill step' }),
};

export interface BatchOptions {
  /** Sessions decoded together in one step (a row each). */
  rows: number;
  /** Prompt tokens per prefill step. */
  chunkSize: number;
}

/**
 * Activation buffers that sessions of one model share when they step together (the server): one
 * prompt at a time is prefilled a chunk per step, and up to `rows` sessions decode a token each in
 * one forward pass, so the weights are read once per step for all of them.
 */
export class Batch {
  readonly rows: number;
  private readonly decodeRows: Activations;
  private readonly prefillChunk: Activations;

  constructor(readonly model: RunnableModel, options: BatchOptions) {
    const o = checked(BATCH_PARAMS, options, 'batch');
    if (model.closed) throw new UsageError(MODEL_CLOSED);
    this.rows = o.rows;
    this.decodeRows = new Activations(model.weights, model.config, o.rows);
    try {
      this.prefillChunk = new Activations(model.weights, model.config, o.chunkSize);
    } catch (e) {
      this.decodeRows.free();
      throw e;
    }
  }

  /** `session.prefill` in the batch's chunk buffers: a chunk per step, the logits after the last token when done. */
  prefill(session: Session, ids: readonly number[]): Generator<void, Float32Array, void> {
    this.checkModel([session]);
    return session.prefill(ids, this.prefillChunk);
  }

  /** One token for each session in one pass (Session.feedEach): their next-token logits, [sessions × vocab], valid until the next decode. */
  decode(sessions: readonly Session[], tokens: readonly number[]): Float32Array {
    this.checkModel(sessions);
    if (sessions.length < 1 || sessions.length > this.rows) throw new UsageError(`batch: ${sessions.length} sessions to decode, the batch holds 1 to ${this.rows}`);
    if (tokens.length !== sessions.length) throw new UsageError(`batch: ${tokens.length} tokens for ${sessions.length} sessions`);
    return Session.feedEach(sessions, tokens, this.decodeRows);
  }

  free(): void {
    this.decodeRows.free();
    this.prefillChunk.free();
  }

  private checkModel(sessions: readonly Session[]): void {
    if (sessions.some((s) => s.model !== this.model)) throw new UsageError('batch: a session runs another model than the batch');
  }
}

const DISPOSED = 'it was disposed';
export const MODEL_CLOSED = 'the model was closed (model.close()): load it again to use it';

/** The first row of logits holding NaN or ±Inf, or -1. */
function firstNonFiniteRow(logits: Float32Array, vocab: number): number {
  for (let i = 0; i < logits.length; i++) if (!Number.isFinite(logits[i]!)) return Math.floor(i / vocab);
  return -1;
}

/** NaN logits would print nothing, a NaN perplexity and a fidelity of 1.0, all with exit 0. */
function nonFinite(position: number): NumericError {
  return new NumericError(`the logits at position ${position} are not finite (NaN or ±Inf): the weights are finite, so activations overflowed in the forward pass`);
}
