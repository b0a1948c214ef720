import { parseSpec, printSpec } from '../cache/registry.js';
import { BusyError, CancelledError, LimitError, RequestError, UsageError } from '../errors.js';
import { Generation, type FinishReason, type GenerationLimits } from '../generation.js';
import { compressionRatio, fullCacheBytes } from '../cache/kvcache.js';
import type { Model } from '../model.js';
import { allocStages, type Stage } from '../model/forward.js';
import { Session } from '../session.js';
import { peakBytes, policyBytesPerSlot } from './memory.js';

export interface EngineOptions {
  /** Cache spec for requests that do not name one. */
  cache: string;
  /** The sum of every session's real KV bytes stays at or below this. */
  maxKvBytes: number;
  /** Sessions running at once. */
  parallel: number;
  /** Requests waiting for a session; past this they are refused (429). */
  queue: number;
  /** Prompt tokens per prefill step (default 32): the others' streams wait for one such chunk at most. */
  chunkSize?: number;
}

export interface EngineRequest extends GenerationLimits {
  prompt: readonly number[];
  /** Cache spec (default: the engine's). */
  cache?: string;
  signal?: AbortSignal;
  /** Called with each piece of text as it is generated. */
  onText?: (text: string) => void;
}

/** What a response says about the cache that served it (the `kv_cache` extension field). */
export interface KvCacheStats {
  spec: string;
  /** Real bytes held at the end. */
  bytes: number;
  peak_bytes: number;
  /** Bytes a full fp16 cache would hold for the same tokens. */
  full_fp16_bytes: number;
  compression: number;
  /** What the numbers depend on that the spec does not say (kvquant's f16 staging, its stored calibration). */
  note?: string;
}

export interface EngineResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  kvCache: KvCacheStats;
}

export interface EngineStats {
  sessions: number;
  queued: number;
  /** Sum of the sessions' real KV bytes now. */
  kvBytes: number;
  /** Highest kvBytes seen at the end of a step. */
  kvBytesPeak: number;
  /** Sum of what the sessions may grow to. */
  kvBytesReserved: number;
  admitted: number;
  promptTokens: number;
  generatedTokens: number;
}

interface Job {
  request: EngineRequest;
  spec: string;
  /** Worst case of its cache, reserved from the budget before it may start. */
  reserved: number;
  session?: Session;
  prefill?: Generator<void, Float32Array, void>;
  generation?: Generation;
  /** The token to feed in the next decode step. */
  next?: number;
  text: string;
  resolve(result: EngineResult): void;
  reject(error: Error): void;
  detach(): void;
}

/** Specs whose policy measurement the engine keeps; others are measured again when next named. */
const SPECS_MEASURED = 64;

/**
 * Runs many generations on one model within one KV byte budget. A request is admitted when a
 * session slot is free and its cache's worst case fits beside the others' reservations; until then
 * it waits in a bounded queue. Each step advances the one prefill by a chunk, then every other session
 * by one token in a single batched forward pass (the weights are read once per step for all of them),
 * so a long prompt never stalls the streams already running for more than a chunk.
 */
export class Engine {
  private readonly queue: Job[] = [];
  private readonly active: Job[] = [];
  /** Bytes of policy state per cache slot, measured once per spec: the most recent specs only (each client may name its own). */
  private readonly policySlotBytes = new Map<string, number>();
  private stepping = false;
  private isDraining = false;
  private idleWaiters: (() => void)[] = [];
  private totals = { admitted: 0, promptTokens: 0, generatedTokens: 0, kvBytesPeak: 0 };

  private readonly defaultSpec: string;
  /** Activations of one decode step, in each layer group's memory: a row per running session. */
  private readonly stages: Stage[];
  /** Activations of one prefill chunk, shared: one prompt is prefilled at a time. */
  private readonly prefillStages: Stage[];

  constructor(readonly model: Model, private readonly options: EngineOptions) {
    this.defaultSpec = this.canonicalSpec(options.cache, false);
    this.stages = allocStages(model.groups, model.config, options.parallel);
    this.prefillStages = allocStages(model.groups, model.config, options.chunkSize ?? 32);
  }

  /**
   * Queues a request. Throws at once (before anything is sent to the client) when the request can
   * never run (a bad spec, too long for the context or for the budget) or the queue is full.
   */
  submit(request: EngineRequest): Promise<EngineResult> {
    if (this.isDraining) throw new BusyError('the server is shutting down', 503);
    const spec = request.cache === undefined ? this.defaultSpec : this.canonicalSpec(request.cache, true);
    const context = this.model.config.maxContext;
    if (request.prompt.length + request.maxTokens > context) {
      throw new LimitError(
        `the prompt (${request.prompt.length} tokens) plus max_tokens (${request.maxTokens}) exceed the model's context of ${context} tokens`,
      );
    }
    if (this.queue.length >= this.options.queue) {
      throw new BusyError(`the server is busy: ${this.active.length} requests running and ${this.queue.length} waiting; retry later`, 429);
    }
    let job!: Job;
    const promise = new Promise<EngineResult>((resolve, reject) => {
      job = { request, spec, reserved: 0, text: '', resolve, reject, detach: () => {} };
    });
    job.reserved = this.reservation(job);
    if (job.reserved > this.options.maxKvBytes) {
      throw new LimitError(
        `this request's cache (${spec}) may hold up to ${job.reserved} bytes, more than the server's KV budget of ${this.options.maxKvBytes}; ` +
          'shorten the prompt, lower max_tokens or choose a smaller kv_cache',
      );
    }
    const signal = request.signal;
    if (signal) {
      const cancel = () => this.cancel(job, new CancelledError('the client went away'));
      if (signal.aborted) throw new CancelledError('the client went away');
      signal.addEventListener('abort', cancel, { once: true });
      job.detach = () => signal.removeEventListener('abort', cancel);
    }
    this.queue.push(job);
    this.wake();
    return promise;
  }

  stats(): EngineStats {
    const kvBytes = this.kvBytes();
    return {
      sessions: this.active.length,
      queued: this.queue.length,
      kvBytes,
      kvBytesPeak: Math.max(this.totals.kvBytesPeak, kvBytes),
      kvBytesReserved: this.active.reduce((sum, j) => sum + j.reserved, 0),
      admitted: this.totals.admitted,
      promptTokens: this.totals.promptTokens,
      generatedTokens: this.totals.generatedTokens,
    };
  }

  /**
   * Stops taking requests and lets the admitted and queued ones finish; after `graceMs` the rest
   * are cancelled. Resolves when none is left.
   */
  async drain(graceMs: number): Promise<void> {
    this.isDraining = true;
    const idle = new Promise<void>((resolve) => this.whenIdle(resolve));
    const timer = setTimeout(() => {
      for (const job of [...this.queue, ...this.active]) this.cancel(job, new CancelledError('the server shut down before the request finished'));
    }, graceMs);
    await idle;
    clearTimeout(timer);
  }

  get draining(): boolean {
    return this.isDraining;
  }

  /**
   * The canonical text of a spec, its policy measured. A request's spec may not name a file: what a
   * client sends never makes the server read one (calibration is the operator's, through --cache).
   */
  private canonicalSpec(text: string, fromRequest: boolean): string {
    try {
      const parsed = parseSpec(text);
      if (fromRequest && (Object.hasOwn(parsed.codec.params, 'calib') || Object.hasOwn(parsed.policy.params, 'calib'))) {
        throw new RequestError('kv_cache: calib is not accepted in requests; the server operator sets calibration with --cache', 400, 'invalid_kv_cache', 'kv_cache');
      }
      const spec = printSpec(parsed);
      this.measure(spec);
      return spec;
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      throw new RequestError(`kv_cache "${text}": ${e.message}`, 400, 'invalid_kv_cache', 'kv_cache');
    }
  }

  /** Measures a spec's policy bytes per slot, keeping the SPECS_MEASURED most recently used (and the default). */
  private measure(spec: string): number {
    let bytes = this.policySlotBytes.get(spec);
    if (bytes === undefined) bytes = policyBytesPerSlot(this.model, spec);
    this.policySlotBytes.delete(spec);
    this.policySlotBytes.set(spec, bytes);
    for (const old of this.policySlotBytes.keys()) {
      if (this.policySlotBytes.size <= SPECS_MEASURED) break;
      if (old !== this.defaultSpec) this.policySlotBytes.delete(old);
    }
    return bytes;
  }

  /** Specs whose measurement is kept (bounded by SPECS_MEASURED + 1). */
  get specsMeasured(): number {
    return this.policySlotBytes.size;
  }

  /** Worst-case bytes of a request's cache: the whole prompt before it compresses, then every token it may generate. */
  private reservation(job: Job): number {
    const session = job.session ?? this.model.session({ cache: job.spec, chunkSize: 1 });
    try {
      const { prompt, maxTokens } = job.request;
      const perSlot = this.measure(job.spec);
      if (!job.session) session.cache.setPromptLength(prompt.length);
      const produced = job.generation?.produced ?? 0;
      const prefill = job.session ? 0 : prompt.length;
      // the last sampled token is never fed
      return peakBytes(session.cache, prefill, Math.max(0, maxTokens - 1 - produced), perSlot);
    } finally {
      if (!job.session) session.dispose();
    }
  }

  private kvBytes(): number {
    return this.active.reduce((sum, j) => sum + (j.session?.cache.bytes() ?? 0), 0);
  }

  /** Schedules a step if there is work, else tells whoever waits for the engine to be idle. */
  private wake(): void {
    if (this.queue.length === 0 && this.active.length === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
      return;
    }
    if (this.stepping) return;
    this.stepping = true;
    setImmediate(() => this.step());
  }

  private step(): void {
    this.stepping = false;
    this.admit();
    const prefilling = this.active.find((j) => j.prefill);
    if (prefilling) this.guarded(prefilling, () => this.prefillStep(prefilling));
    const decoding = this.active.filter((j) => j.next !== undefined);
    if (decoding.length > 0) this.decodeStep(decoding);
    this.totals.kvBytesPeak = Math.max(this.totals.kvBytesPeak, this.kvBytes());
    this.wake();
  }

  /**
   * Starts the next waiting request when a session slot is free, no other prompt is being prefilled
   * and its reservation fits. Prefills run one at a time anyway, so only one session at a time
   * reserves for a whole uncompressed prompt; the others reserve what their compressed cache may reach.
   */
  private admit(): void {
    if (this.queue.length === 0 || this.active.length >= this.options.parallel || this.active.some((j) => j.prefill)) return;
    const job = this.queue[0]!;
    const reserved = this.active.reduce((sum, j) => sum + j.reserved, 0);
    if (reserved + job.reserved > this.options.maxKvBytes) return;
    this.queue.shift();
    this.active.push(job);
    this.totals.admitted++;
    this.totals.promptTokens += job.request.prompt.length;
    this.guarded(job, () => {
      // the session's own buffers are one row: it prefills with the shared ones and decodes in the batch
      job.session = this.model.session({ cache: job.spec, chunkSize: 1 });
      job.prefill = job.session.prefill(job.request.prompt, this.prefillStages);
      job.generation = new Generation(this.model.tokenizer, this.model.config.vocabSize, job.request.prompt, job.request);
    });
  }

  private prefillStep(job: Job): void {
    const step = job.prefill!.next();
    if (!step.done) return;
    job.prefill = undefined;
    // the prompt is in and compressed: what it may still grow to is less than what was reserved
    job.reserved = Math.max(job.session!.cache.bytes(), this.reservation(job));
    this.advance(job, step.value);
  }

  /** One token for every decoding session, in one forward pass. */
  private decodeStep(jobs: Job[]): void {
    const tokens = jobs.map((j) => j.next!);
    for (const job of jobs) job.next = undefined;
    let logits: Float32Array;
    try {
      logits = Session.feedEach(jobs.map((j) => j.session!), tokens, this.stages);
    } catch (e) {
      for (const job of jobs) this.cancel(job, e as Error);
      return;
    }
    const vocab = this.model.config.vocabSize;
    for (const [i, job] of jobs.entries()) this.guarded(job, () => this.advance(job, logits.subarray(i * vocab, (i + 1) * vocab)));
  }

  /** Samples from the logits after the job's last token and emits the text; finishes it or queues the token to feed. */
  private advance(job: Job, logits: Float32Array): void {
    const before = job.generation!.produced;
    const step = job.generation!.step(logits);
    this.totals.generatedTokens += job.generation!.produced - before;
    if (step.text) {
      job.text += step.text;
      job.request.onText?.(step.text);
    }
    if (step.finish) return this.finish(job, step.finish);
    job.next = step.token;
  }

  private finish(job: Job, finishReason: FinishReason): void {
    const cache = job.session!.cache;
    const tokens = job.session!.tokens.length;
    const bytes = cache.bytes();
    const c = this.model.config;
    // a note may name the operator's calibration file: the client gets its name, not where the server keeps it
    const note = cache.codec.note?.()?.replace(/(?:[A-Za-z]:)?(?:[\\/][^\s\\/]+)+[\\/]([^\s\\/]+)/g, '$1');
    const kvCache = { spec: job.spec, bytes, peak_bytes: cache.peakBytes(), full_fp16_bytes: fullCacheBytes(c, tokens), compression: compressionRatio(c, tokens, bytes), ...(note && { note }) };
    const result = {
      text: job.text,
      finishReason,
      promptTokens: job.request.prompt.length,
      completionTokens: job.generation!.produced,
      kvCache,
    };
    this.release(job);
    job.resolve(result);
  }

  private cancel(job: Job, error: Error): void {
    this.release(job);
    job.reject(error);
  }

  /** Frees the job's session and its reservation at once. */
  private release(job: Job): void {
    // a session that ends within a step is counted before it goes
    this.totals.kvBytesPeak = Math.max(this.totals.kvBytesPeak, this.kvBytes());
    job.detach();
    const queued = this.queue.indexOf(job);
    if (queued >= 0) this.queue.splice(queued, 1);
    const active = this.active.indexOf(job);
    if (active >= 0) this.active.splice(active, 1);
    job.session?.dispose();
    job.session = undefined;
    job.prefill = undefined;
    job.next = undefined;
    this.wake();
  }

  /** A failing request fails alone; the others keep running. */
  private guarded(job: Job, run: () => void): void {
    try {
      run();
    } catch (e) {
      this.cancel(job, e as Error);
    }
  }

  private whenIdle(resolve: () => void): void {
    if (this.queue.length === 0 && this.active.length === 0) resolve();
    else this.idleWaiters.push(resolve);
  }
}
