import { parseSpec, printSpec } from '../cache/registry.js';
import { BusyError, CancelledError, LimitError, RequestError, UsageError } from '../errors.js';
import { Generation, type FinishReason, type GenerationLimits, type StepLogprobs } from '../engine/generation.js';
import { compressionRatio, fullCacheBytes } from '../cache/kvcache.js';
import type { Model } from '../engine/model.js';
import type { Batch, Session } from '../engine/session.js';
import { MEMORY_LIMIT_BYTES, MEMORY_RESERVE_BYTES, scratchKernels } from '../model/plan.js';
import { predictedPeakBytes, SpecCost, type CacheDemand } from './memory.js';

export interface SchedulerOptions {
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
  /**
   * Bytes the sessions' caches may allocate in one kernel memory (default: what a WebAssembly memory
   * can still grow to once the model and the step buffers are in it, less a reserve).
   */
  memoryBytes?: number;
}

export interface SchedulerRequest extends GenerationLimits {
  prompt: readonly number[];
  /** Cache spec (default: the scheduler's). */
  cache?: string;
  signal?: AbortSignal;
  /** Called with each piece of text as it is generated, and with each generated token's logprobs when asked (its text may come later). */
  onText?: (text: string, logprobs?: StepLogprobs) => void;
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

export interface SchedulerResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  kvCache: KvCacheStats;
  /** One per generated token (completionTokens of them) when the request asks for logprobs. */
  logprobs?: StepLogprobs[];
}

export interface SchedulerStats {
  sessions: number;
  queued: number;
  /** Sum of the sessions' real KV bytes now. */
  kvBytes: number;
  /** Highest kvBytes seen at the end of a step. */
  kvBytesPeak: number;
  /** Sum of what the sessions may grow to. */
  kvBytesReserved: number;
  /** Sum of the kernel memory the sessions' caches may allocate (their capacity, not what they hold). */
  kvBytesAllocated: number;
  /** Scheduler steps run so far. */
  steps: number;
  admitted: number;
  promptTokens: number;
  generatedTokens: number;
}

/**
 * Where a job is: waiting for a session; its prompt being fed a chunk per step; one token per step
 * in the batch; or finished (resolved, rejected or cancelled, its session freed).
 */
type JobState = 'queued' | 'prefilling' | 'decoding' | 'done';

interface Job {
  state: JobState;
  request: SchedulerRequest;
  spec: string;
  /** Worst case of its cache, reserved before it may start: held bytes (the budget) and allocated ones (kernel memory). */
  reserved: CacheDemand;
  session?: Session;
  /** While prefilling: the rest of the prompt. */
  prefill?: Generator<void, Float32Array, void>;
  generation?: Generation;
  /** While decoding: the token to feed in the next step. */
  next?: number;
  text: string;
  logprobs: StepLogprobs[];
  resolve(result: SchedulerResult): void;
  reject(error: Error): void;
  detach(): void;
}

/** Specs whose cost the scheduler keeps; others are worked out again when next named. */
const SPECS_COSTED = 64;

/**
 * Runs many generations on one model within one KV byte budget. A request is admitted when a
 * session slot is free and its cache's worst case fits beside the others' reservations; until then
 * it waits in a bounded queue. Each step advances the one prefill by a chunk, then every other session
 * by one token in a single batched forward pass (the weights are read once per step for all of them),
 * so a long prompt never stalls the streams already running for more than a chunk. A request is
 * admitted only when its cache fits both the KV budget (bytes held) and the kernel memory (bytes
 * allocated: a cache's capacity grows by doubling), so a large model queues instead of failing.
 */
export class Scheduler {
  private readonly queue: Job[] = [];
  private readonly active: Job[] = [];
  /** Each spec's cost, worked out once: the most recent specs only (each client may name its own). */
  private readonly costs = new Map<string, SpecCost>();
  /** The memory the costs' one-slot caches live in. */
  private readonly scratch = scratchKernels();
  /** Kernel memory one memory can give the caches (see SchedulerOptions.memoryBytes). */
  private readonly memoryBytes: number;
  /** The share of a cache's allocation the fullest kernel memory holds (its layers' share). */
  private readonly memoryShare: number;
  private stepping = false;
  private isDraining = false;
  private idleWaiters: (() => void)[] = [];
  private totals = { admitted: 0, promptTokens: 0, generatedTokens: 0, kvBytesPeak: 0, steps: 0 };

  private readonly defaultSpec: string;
  /** A row per running session in one decode step; one prompt's chunk at a time. */
  private readonly batch: Batch;

  constructor(readonly model: Model, private readonly options: SchedulerOptions) {
    this.defaultSpec = this.canonicalSpec(options.cache, false);
    this.batch = model.batch({ rows: options.parallel, chunkSize: options.chunkSize ?? 32 });
    const memories = model.weights.groups;
    this.memoryBytes = options.memoryBytes ?? Math.max(0, MEMORY_LIMIT_BYTES - MEMORY_RESERVE_BYTES - memories.mostUsed());
    this.memoryShare = memories.largestShare();
  }

  /**
   * Queues a request. Throws at once (before anything is sent to the client) when the request can
   * never run (a bad spec, too long for the context or for the budget) or the queue is full.
   */
  submit(request: SchedulerRequest): Promise<SchedulerResult> {
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
    // the last sampled token is never fed
    const reserved = this.cost(spec).demand(request.prompt.length, Math.max(0, request.maxTokens - 1));
    if (reserved.held > this.options.maxKvBytes) {
      throw new LimitError(
        `this request's cache (${spec}) may hold up to ${reserved.held} bytes, more than the server's KV budget of ${this.options.maxKvBytes}; ` +
          'shorten the prompt, lower max_tokens or choose a smaller kv_cache',
      );
    }
    if (this.inMemory(reserved.allocated) > this.memoryBytes) {
      throw new LimitError(
        `this request's cache (${spec}) may allocate up to ${this.inMemory(reserved.allocated)} bytes in one kernel memory, more than the ${this.memoryBytes} it can give; ` +
          'shorten the prompt, lower max_tokens or choose a smaller kv_cache',
      );
    }
    let job!: Job;
    const promise = new Promise<SchedulerResult>((resolve, reject) => {
      job = { state: 'queued', request, spec, reserved, text: '', logprobs: [], resolve, reject, detach: () => {} };
    });
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

  stats(): SchedulerStats {
    const kvBytes = this.kvBytes();
    return {
      sessions: this.active.length,
      queued: this.queue.length,
      kvBytes,
      kvBytesPeak: Math.max(this.totals.kvBytesPeak, kvBytes),
      kvBytesReserved: this.reservedBy(this.active, 'held'),
      kvBytesAllocated: this.reservedBy(this.active, 'allocated'),
      steps: this.totals.steps,
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
   * The canonical text of a spec, its cost worked out. A request's spec may not name a file: what a
   * client sends never makes the server read one (calibration is the operator's, through --cache).
   */
  private canonicalSpec(text: string, fromRequest: boolean): string {
    try {
      const parsed = parseSpec(text);
      if (fromRequest && (Object.hasOwn(parsed.codec.params, 'calib') || Object.hasOwn(parsed.policy.params, 'calib'))) {
        throw new RequestError('kv_cache: calib is not accepted in requests; the server operator sets calibration with --cache', 400, 'invalid_kv_cache', 'kv_cache');
      }
      const spec = printSpec(parsed);
      this.cost(spec);
      return spec;
    } catch (e) {
      if (!(e instanceof UsageError)) throw e;
      throw new RequestError(`kv_cache "${text}": ${e.message}`, 400, 'invalid_kv_cache', 'kv_cache');
    }
  }

  /** A spec's cost, keeping the SPECS_COSTED most recently used (and the default). */
  private cost(spec: string): SpecCost {
    const cost = this.costs.get(spec) ?? new SpecCost(this.model, spec, this.scratch);
    this.costs.delete(spec);
    this.costs.set(spec, cost);
    for (const old of this.costs.keys()) {
      if (this.costs.size <= SPECS_COSTED) break;
      if (old === this.defaultSpec) continue;
      this.costs.get(old)!.free();
      this.costs.delete(old);
    }
    return cost;
  }

  /** Specs whose cost is kept (bounded by SPECS_COSTED + 1). */
  get specsCosted(): number {
    return this.costs.size;
  }

  /** What the fullest kernel memory holds of a cache's allocation. */
  private inMemory(allocated: number): number {
    return Math.ceil(allocated * this.memoryShare);
  }

  private reservedBy(jobs: readonly Job[], part: keyof CacheDemand): number {
    return jobs.reduce((sum, j) => sum + j.reserved[part], 0);
  }

  private kvBytes(): number {
    return this.active.reduce((sum, j) => sum + (j.session?.cache.bytes() ?? 0), 0);
  }

  /** Schedules a step if there is work, else tells whoever waits for the scheduler to be idle. */
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
    this.totals.steps++;
    this.admit();
    const prefilling = this.active.find((j) => j.state === 'prefilling');
    if (prefilling) this.guarded(prefilling, () => this.prefillStep(prefilling));
    const decoding = this.active.filter((j) => j.state === 'decoding');
    if (decoding.length > 0) this.decodeStep(decoding);
    this.totals.kvBytesPeak = Math.max(this.totals.kvBytesPeak, this.kvBytes());
    this.wake();
  }

  /**
   * Starts the next waiting request when a session slot is free, no other prompt is being prefilled
   * and its reservation fits, in held bytes and in allocated ones. Prefills run one at a time anyway,
   * so only one session at a time reserves for a whole uncompressed prompt; the others reserve what
   * their compressed cache may reach.
   */
  private admit(): void {
    if (this.queue.length === 0 || this.active.length >= this.options.parallel || this.active.some((j) => j.state === 'prefilling')) return;
    const job = this.queue[0]!;
    if (this.reservedBy(this.active, 'held') + job.reserved.held > this.options.maxKvBytes) return;
    if (this.inMemory(this.reservedBy(this.active, 'allocated') + job.reserved.allocated) > this.memoryBytes) return;
    this.queue.shift();
    this.active.push(job);
    job.state = 'prefilling';
    this.totals.admitted++;
    this.totals.promptTokens += job.request.prompt.length;
    this.guarded(job, () => {
      // the session's own buffers are one row: it prefills with the shared ones and decodes in the batch
      job.session = this.model.session({ cache: job.spec, chunkSize: 1 });
      job.prefill = this.batch.prefill(job.session, job.request.prompt);
      job.generation = new Generation(this.model.tokenizer, this.model.config.vocabSize, job.request.prompt, job.request);
    });
  }

  private prefillStep(job: Job): void {
    const step = job.prefill!.next();
    if (!step.done) return;
    job.prefill = undefined;
    job.state = 'decoding';
    // the prompt is in and compressed: what it may still hold is less than what was reserved (its allocation stays)
    const cache = job.session!.cache;
    const rest = Math.max(0, job.request.maxTokens - 1 - job.generation!.produced);
    job.reserved = { held: Math.max(cache.bytes(), predictedPeakBytes(cache, 0, rest)), allocated: job.reserved.allocated };
    this.advance(job, step.value);
  }

  /** One token for every decoding session, in one forward pass. */
  private decodeStep(jobs: Job[]): void {
    const tokens = jobs.map((j) => j.next!);
    for (const job of jobs) job.next = undefined;
    let logits: Float32Array;
    try {
      logits = this.batch.decode(jobs.map((j) => j.session!), tokens);
    } catch (e) {
      for (const job of jobs) this.cancel(job, e as Error);
      return;
    }
    const vocab = this.model.config.vocabSize;
    for (const [i, job] of jobs.entries()) this.guarded(job, () => this.advance(job, logits.subarray(i * vocab, (i + 1) * vocab)));
  }

  /** Samples from the logits after the job's last token and emits the text; finishes it or sets the token to feed. */
  private advance(job: Job, logits: Float32Array): void {
    const before = job.generation!.produced;
    const step = job.generation!.step(logits);
    this.totals.generatedTokens += job.generation!.produced - before;
    if (step.logprobs) job.logprobs.push(step.logprobs);
    if (step.text || step.logprobs) {
      job.text += step.text;
      job.request.onText?.(step.text, step.logprobs);
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
    const note = cache.note()?.replace(/(?:[A-Za-z]:)?(?:[\\/][^\s\\/]+)+[\\/]([^\s\\/]+)/g, '$1');
    const kvCache = { spec: job.spec, bytes, peak_bytes: cache.peakBytes(), full_fp16_bytes: fullCacheBytes(c, tokens), compression: compressionRatio(c, tokens, bytes), ...(note && { note }) };
    const result = {
      text: job.text,
      finishReason,
      promptTokens: job.request.prompt.length,
      completionTokens: job.generation!.produced,
      kvCache,
      ...(job.request.logprobs !== undefined && { logprobs: job.logprobs }),
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
    job.state = 'done';
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
