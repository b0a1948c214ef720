import { UsageError } from '../errors.js';
import type { Model } from '../engine/model.js';
import { defaultContext, evalChunks, loadEvalTokens } from './data.js';
import { CacheMeter, type CacheMemory } from './memory.js';

export interface PerplexityOptions {
  /** A dataset name (wikitext2, c4, pg19; stories260k, token ids scored story by story) or a text file. */
  data: string;
  /** Tokens per chunk (stories260k: each story is cut to this many); default: the model's context (defaultContext). */
  ctx?: number;
  /** At most this many chunks (all when omitted). */
  chunks?: number;
  cache?: string;
  mode?: 'chunked' | 'decode';
  /** Past the trained context with a fixed-budget cache (see SessionOptions.streaming). */
  streaming?: boolean;
  /** Also report perplexity per window of this many positions within a chunk (averaged over chunks). */
  windowSize?: number;
  /** Called after each scored token batch with the count done so far and the total. */
  onProgress?: (done: number, total: number) => void;
  /** Bytes the cache may hold (SessionOptions.maxKvBytes). */
  maxKvBytes?: number;
}

export interface PerplexityResult {
  ppl: number;
  /** Predicted tokens (chunk length - 1 per chunk). */
  tokens: number;
  chunks: number;
  ctx: number;
  mode: 'chunked' | 'decode';
  model: string;
  cache: string;
  data: string;
  seconds: number;
  memory: CacheMemory;
  streaming: boolean;
  /** What the policy reports about the run (e.g. scissorhands mode=reference: keep_ratio). */
  policy_stats?: Record<string, number>;
  /** Perplexity of each windowSize-position window, in order (when windowSize was given). */
  windows?: number[];
}

/**
 * Perplexity as the GPTQ/KVQuant scripts compute it: tokenize the joined text once, cut it into
 * non-overlapping ctx-token chunks, score each chunk from an empty cache, and take exp of the mean
 * NLL over every predicted token. A token set (stories260k) is scored one document per chunk.
 */
export function perplexity(model: Model, o: PerplexityOptions): PerplexityResult {
  const started = performance.now();
  const evalTokens = loadEvalTokens(o.data, model.tokenizer);
  const ctx = o.ctx ?? defaultContext(o.data, model.config.maxContext);
  if (!Number.isInteger(ctx) || ctx < 2) throw new UsageError(`--ctx must be an integer ≥ 2, got ${ctx}`);
  if (ctx > model.config.maxContext && o.streaming !== true) {
    throw new UsageError(`--ctx ${ctx} exceeds the model's context of ${model.config.maxContext}; give --ctx ${model.config.maxContext} or less (or --streaming with a fixed-budget cache)`);
  }
  const chunks = evalChunks(evalTokens, ctx, o.chunks, o.data);
  const mode = o.mode ?? 'chunked';
  const cache = o.cache ?? 'full';
  const streaming = o.streaming === true;
  const session = model.session({ cache, streaming, maxKvBytes: o.maxKvBytes });
  const windowNll: number[] = [];
  const windowCount: number[] = [];
  let nll = 0;
  const meter = new CacheMeter(session);
  let policyStats: Record<string, number> | undefined;
  const total = chunks.reduce((n, c) => n + c.length, 0);
  let before = 0;
  try {
    for (const chunk of chunks) {
      session.reset();
      const offset = before;
      const logps = session.score(chunk, {
        mode,
        onProgress: (done) => o.onProgress?.(offset + done, total),
      });
      before += chunk.length;
      logps.forEach((lp, i) => {
        nll -= lp;
        if (!o.windowSize) return;
        const w = Math.floor(i / o.windowSize);
        windowNll[w] = (windowNll[w] ?? 0) - lp;
        windowCount[w] = (windowCount[w] ?? 0) + 1;
      });
      meter.record();
      policyStats = session.cache.policy.stats?.();
    }
  } finally {
    session.dispose();
  }
  const tokens = total - chunks.length;
  return {
    ppl: Math.exp(nll / tokens),
    tokens,
    chunks: chunks.length,
    ctx,
    mode,
    model: model.source,
    cache: session.cache.spec,
    data: o.data,
    seconds: (performance.now() - started) / 1000,
    memory: meter.memory(),
    streaming,
    ...(policyStats ? { policy_stats: policyStats } : {}),
    ...(o.windowSize ? { windows: windowNll.map((v, w) => Math.exp(v / windowCount[w]!)) } : {}),
  };
}
