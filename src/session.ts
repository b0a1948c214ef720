import { createCache } from './cache/build.js';
import type { KVCache } from './cache/kvcache.js';
import { parseSpec } from './cache/registry.js';
import { LimitError, UsageError } from './errors.js';
import { Generation } from './generation.js';
import { allocScratch, forward, forwardBatch, freeScratch, type Scratch } from './model/forward.js';
import type { Kernels } from './kernels/api.js';
import type { ModelConfig } from './model/config.js';
import type { Weights } from './model/weights.js';
import { logSoftmax } from './sample.js';
import type { ModelIdentity } from './cache/quant/calibfile.js';
import type { Tokenizer } from './tokenizer/tokenizer.js';

/** What a session runs: a loaded model's config, weights in kernel memory and tokenizer (a `Model` is one). */
export interface RunnableModel {
  readonly config: ModelConfig;
  readonly kernels: Kernels;
  readonly weights: Weights;
  readonly tokenizer: Tokenizer;
  /** What a calibration file is checked against (see Model.identity). */
  identity(): ModelIdentity;
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
}

export interface GenerateOptions {
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Generation ends before any of these strings; the string itself is not emitted. */
  stop?: string[];
  /** Prepend BOS when the prompt is text (default: what the tokenizer does). */
  addBos?: boolean;
  signal?: AbortSignal;
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

/** A conversation with a model: a token history and the cache that holds it. */
export class Session {
  readonly tokens: number[] = [];
  readonly cache: KVCache;
  private readonly scratch: Scratch;
  private readonly chunkSize: number;
  private readonly streaming: boolean;

  constructor(readonly model: RunnableModel, options: SessionOptions = {}) {
    const spec = parseSpec(options.cache ?? 'full');
    this.chunkSize = options.chunkSize ?? 128;
    if (!Number.isInteger(this.chunkSize) || this.chunkSize < 1) throw new UsageError(`chunkSize must be a positive integer, got ${this.chunkSize}`);
    const c = model.config;
    this.streaming = options.streaming === true;
    this.cache = createCache(model.kernels, c, spec, Math.min(c.maxContext, 1024), { streaming: this.streaming, model: () => model.identity() });
    this.scratch = allocScratch(model.kernels, c, this.chunkSize);
  }

  /**
   * Appends tokens and returns the logits after the last one (a view, valid until the next call).
   * The cache compresses once the tokens are in: a prompt is compressed as a whole.
   */
  feed(ids: readonly number[]): Float32Array {
    const steps = this.prefill(ids);
    for (;;) {
      const step = steps.next();
      if (step.done) return step.value;
    }
  }

  /**
   * `feed` one chunk per step, so a caller (the server) can interleave other sessions' work
   * between chunks; returns the logits after the last token when done.
   */
  *prefill(ids: readonly number[]): Generator<void, Float32Array, void> {
    if (ids.length === 0) throw new UsageError('nothing to feed: the token list is empty');
    this.checkRoom(ids.length, 'feed fewer tokens');
    this.cache.setPromptLength(ids.length);
    let logits: Float32Array | undefined;
    for (let i = 0; i < ids.length; i += this.chunkSize) {
      if (i > 0) yield;
      logits = this.run(ids.slice(i, i + this.chunkSize), false);
    }
    this.cache.compress();
    return logits!;
  }

  /**
   * Streams generated text. The prompt (text or token ids) is appended to the history, then tokens
   * are sampled until maxTokens, an end-of-sequence token, or a stop string.
   */
  async *generate(prompt: string | readonly number[], options: GenerateOptions = {}): AsyncGenerator<string> {
    const tok = this.model.tokenizer;
    const ids = typeof prompt === 'string'
      ? tok.encode(prompt, { addBos: options.addBos ?? (this.tokens.length === 0 ? tok.addBosByDefault : false) })
      : [...prompt];
    if (ids.length === 0) {
      if (tok.bos === undefined) throw new UsageError('the prompt is empty and the model has no BOS token to start from');
      ids.push(tok.bos);
    }
    const maxTokens = options.maxTokens ?? 256;
    this.checkRoom(ids.length + maxTokens, 'shorten the prompt or generate fewer tokens (--max-tokens)');
    const generation = new Generation(tok, this.model.config.vocabSize, ids, {
      maxTokens,
      temperature: options.temperature ?? 0.8,
      topP: options.topP ?? 1,
      seed: options.seed ?? 0,
      stop: options.stop ?? [],
    });
    let logits = this.feed(ids);
    for (;;) {
      if (options.signal?.aborted) {
        const rest = generation.end();
        if (rest) yield rest;
        return;
      }
      const step = generation.step(logits);
      if (step.text) yield step.text;
      if (step.token !== undefined) logits = this.feed([step.token]); // the last one too, so the history and the cache stay in step
      if (step.finish) return;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * Log-probability of each token given the ones before it: result[i] = log p(ids[i+1] | ids[0..i]).
   * The session starts from its current history (usually empty).
   */
  score(ids: readonly number[], options: ScoreOptions = {}): Float64Array {
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
      this.cache.compress();
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
    this.tokens.length = 0;
    this.cache.reset();
  }

  /** Frees the cache and scratch memory; the session cannot be used afterwards. */
  dispose(): void {
    this.cache.free();
    freeScratch(this.model.kernels, this.scratch);
  }

  /**
   * Feeds one token to each session in one forward pass (the weights are read once for all of them)
   * and returns their next-token logits, [sessions × vocab] in order: a view into `scratch` (rows for
   * at least sessions.length tokens), valid until its next use. Each cache compresses after its token.
   */
  static feedEach(sessions: readonly Session[], tokens: readonly number[], scratch: Scratch): Float32Array {
    const model = sessions[0]!.model;
    for (const [i, session] of sessions.entries()) {
      if (session.model !== model) throw new UsageError('feedEach: the sessions run different models');
      session.checkRoom(1, 'end the request sooner (max_tokens)');
      session.checkIds([tokens[i]!]);
    }
    const batch = sessions.map((session, i) => ({ cache: session.cache, ids: [tokens[i]!], positions: [session.tokens.length], allLogits: false }));
    const logits = forwardBatch(model.kernels, model.config, model.weights, scratch, batch);
    for (const [i, session] of sessions.entries()) {
      session.tokens.push(tokens[i]!);
      session.cache.compress();
    }
    return logits;
  }

  private checkIds(ids: readonly number[]): void {
    const vocab = this.model.config.vocabSize;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new UsageError(`token id ${id} is outside the vocabulary (0..${vocab - 1})`);
    }
  }

  private run(ids: readonly number[], allLogits: boolean): Float32Array {
    this.checkIds(ids);
    const start = this.tokens.length;
    const positions = ids.map((_, i) => start + i);
    const logits = forward(this.model.kernels, this.model.config, this.model.weights, this.scratch, this.cache, ids, positions, allLogits);
    this.tokens.push(...ids);
    return logits;
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
