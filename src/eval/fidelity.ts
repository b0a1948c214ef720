import { UsageError } from '../errors.js';
import type { Model } from '../engine/model.js';
import { argmax, logSoftmax } from '../engine/sample.js';
import { defaultContext, evalChunks, loadEvalTokens } from './data.js';
import { CacheMeter, type CacheMemory } from './memory.js';

/**
 * How closely a compressed cache follows the exact full one (f32, FIDELITY_REFERENCE) on the same text: at
 * every position, the next-token distribution of the candidate against the full cache's, as KL(full ‖ candidate) and
 * top-1 agreement. For a small model whose perplexity barely moves this is the sensitive measure
 * (KVQuant and the eviction papers report the same divergence).
 *
 * Memory stays at one chunk: the full cache's logits of a chunk are kept as f32 (exactly what the
 * model produced), the candidate runs over the same chunk and is compared position by position, in
 * f64. The full run of the last chunk is remembered per model, so several candidates on the same
 * text (a sweep, `kvpack eval fidelity --cache a --cache b`) run the full cache once.
 */
export interface FidelityOptions {
  data: string;
  /** Tokens per chunk; default: the model's context (defaultContext). */
  ctx?: number;
  chunks?: number;
  cache: string;
  /** 'decode' by default: eviction happens only between fed batches, so chunked mode hides most of it. */
  mode?: 'chunked' | 'decode';
  onProgress?: (done: number, total: number) => void;
}

export interface FidelityResult {
  /** Mean over predicted positions of KL(full ‖ candidate), in nats. */
  kl: number;
  /** Largest per-position KL. */
  kl_max: number;
  /** Fraction of positions where both caches' most likely next token is the same. */
  top1: number;
  /** Perplexity of the candidate and of the full cache on the same tokens. */
  ppl: number;
  ppl_full: number;
  tokens: number;
  chunks: number;
  memory: CacheMemory;
}

interface FullRun {
  key: string;
  /** [positions × vocab] logits of the full cache. */
  logits: Float32Array;
  nll: number;
}

/** The reference every candidate is compared with: the exact cache (f32), so the fp16 default's own cost shows. */
export const FIDELITY_REFERENCE = 'full+fp32';

const fullRuns = new WeakMap<Model, FullRun>();

function fullCacheRun(model: Model, chunk: readonly number[], mode: 'chunked' | 'decode', key: string): FullRun {
  const known = fullRuns.get(model);
  if (known && known.key === key) return known;
  fullRuns.delete(model); // free the previous chunk before allocating the next
  const vocab = model.config.vocabSize;
  const logits = new Float32Array((chunk.length - 1) * vocab);
  const session = model.session({ cache: FIDELITY_REFERENCE });
  let nll = 0;
  try {
    const logps = session.score(chunk, { mode, onLogits: (i, row) => logits.set(row, i * vocab) });
    for (const lp of logps) nll -= lp;
  } finally {
    session.dispose();
  }
  const ref = { key, logits, nll };
  fullRuns.set(model, ref);
  return ref;
}

export function fidelity(model: Model, o: FidelityOptions): FidelityResult {
  const tokens = loadEvalTokens(o.data, model.tokenizer);
  const ctx = o.ctx ?? defaultContext(o.data, model.config.maxContext);
  if (!Number.isInteger(ctx) || ctx < 2) throw new UsageError(`ctx must be an integer ≥ 2, got ${ctx}`);
  if (ctx > model.config.maxContext) throw new UsageError(`ctx ${ctx} exceeds the model's context of ${model.config.maxContext}; give ctx=${model.config.maxContext} or less`);
  const mode = o.mode ?? 'decode';
  const chunks = evalChunks(tokens, ctx, o.chunks, o.data);
  const vocab = model.config.vocabSize;
  // Each chunk is run twice (full, then candidate) unless the full run is remembered.
  const total = chunks.reduce((n, c) => n + 2 * c.length, 0);
  let done = 0;
  const divergence = new Divergence(vocab);
  let nllCand = 0;
  let nllFull = 0;
  const session = model.session({ cache: o.cache });
  const meter = new CacheMeter(session);
  try {
    chunks.forEach((chunk, c) => {
      const key = `${o.data}\0${ctx}\0${c}\0${mode}\0${chunk.length}\0${chunk[0]}\0${chunk[chunk.length - 1]}`;
      const ref = fullCacheRun(model, chunk, mode, key);
      nllFull += ref.nll;
      done += chunk.length;
      o.onProgress?.(done, total);
      session.reset();
      const base = done;
      const logps = session.score(chunk, {
        mode,
        onProgress: (n) => o.onProgress?.(base + n, total),
        onLogits: (i, row) => divergence.add(ref.logits.subarray(i * vocab, (i + 1) * vocab), row),
      });
      done += chunk.length;
      for (const lp of logps) nllCand -= lp;
      meter.record();
    });
  } finally {
    session.dispose();
  }
  const positions = divergence.positions;
  return {
    kl: divergence.kl(),
    kl_max: divergence.klMax,
    top1: divergence.top1(),
    ppl: Math.exp(nllCand / positions),
    ppl_full: Math.exp(nllFull / positions),
    tokens: positions,
    chunks: chunks.length,
    memory: meter.memory(),
  };
}

/** KL(reference ‖ candidate) and top-1 agreement of next-token distributions, position by position, in f64. */
export class Divergence {
  private readonly ref: Float64Array;
  private readonly cand: Float64Array;
  private klSum = 0;
  private agree = 0;
  klMax = 0;
  positions = 0;

  constructor(vocab: number) {
    this.ref = new Float64Array(vocab);
    this.cand = new Float64Array(vocab);
  }

  /** One position: the reference's logits and the candidate's. */
  add(reference: Float32Array, candidate: Float32Array): void {
    logSoftmax(reference, this.ref);
    logSoftmax(candidate, this.cand);
    let kl = 0;
    for (let v = 0; v < this.ref.length; v++) {
      const lp = this.ref[v]!;
      if (lp > -745) kl += Math.exp(lp) * (lp - this.cand[v]!); // exp underflows to 0 below that anyway
    }
    kl = Math.max(0, kl); // rounding can leave a hair below zero for identical rows
    this.klSum += kl;
    this.klMax = Math.max(this.klMax, kl);
    if (argmax(reference) === argmax(candidate)) this.agree++;
    this.positions++;
  }

  /** Mean KL over the positions, in nats. */
  kl(): number {
    return this.klSum / this.positions;
  }

  /** Share of positions whose most likely token is the reference's. */
  top1(): number {
    return this.agree / this.positions;
  }
}
