import { UsageError } from '../errors.js';
import type { Model } from '../engine/model.js';
import { loadEvalTokens } from './data.js';
import { CacheMeter, type CacheMemory } from './memory.js';

/**
 * In-context copying (the repeated-sequence test of induction heads, Olsson et al. 2022): each item is
 * text A, a span X, text B, X again, all consecutive stretches of a text set; the mean NLL per token of
 * X's second occurrence over that of its first. A model that reads its context copies (ratio far below
 * 1); one that does not scores both alike. Both occurrences follow `gap` tokens of text, and their
 * first token (not predictable from the span) is left out of both.
 */
export interface CopyOptions {
  data: string;
  span: number;
  gap: number;
  items: number;
  cache: string;
  mode?: 'chunked' | 'decode';
  onProgress?: (done: number, total: number) => void;
}

export interface CopyResult {
  /** nll_second / nll_first. */
  ratio: number;
  nll_first: number;
  nll_second: number;
  items: number;
  memory: CacheMemory;
}

/** The items' token ids: [A, X, B, X] from consecutive stretches of the text's ids. */
export function copyItems(ids: readonly number[], span: number, gap: number, items: number): number[][] {
  const stride = 2 * gap + span;
  if (ids.length < items * stride) {
    throw new UsageError(`copy needs ${items * stride} tokens of text for ${items} items of span ${span} and gap ${gap}; the text has ${ids.length}`);
  }
  return Array.from({ length: items }, (_, i) => {
    const at = i * stride;
    const x = ids.slice(at + gap, at + gap + span);
    return [...ids.slice(at, at + gap + span), ...ids.slice(at + gap + span, at + stride), ...x];
  });
}

export function copyNll(model: Model, o: CopyOptions): CopyResult {
  if (o.span < 2) throw new UsageError(`copy span must be at least 2 tokens, got ${o.span}`);
  const length = 2 * (o.gap + o.span);
  if (length > model.config.maxContext) {
    throw new UsageError(`copy items of ${length} tokens (2 × (gap + span)) exceed the model's context of ${model.config.maxContext}`);
  }
  const tokens = loadEvalTokens(o.data, model.tokenizer);
  const ids = tokens.kind === 'stream' ? tokens.ids : tokens.docs.flat();
  const items = copyItems(ids, o.span, o.gap, o.items);
  const session = model.session({ cache: o.cache });
  const meter = new CacheMeter(session);
  let first = 0;
  let second = 0;
  try {
    items.forEach((item, i) => {
      session.reset();
      // logps[j] = log p(item[j + 1] | item[..j]); each occurrence's tokens after its first
      const logps = session.score(item, { mode: o.mode, onProgress: (done) => o.onProgress?.(i * length + done, items.length * length) });
      for (let t = 1; t < o.span; t++) {
        first -= logps[o.gap + t - 1]!;
        second -= logps[2 * o.gap + o.span + t - 1]!;
      }
      meter.record();
    });
  } finally {
    session.dispose();
  }
  const n = items.length * (o.span - 1);
  return { ratio: second / first, nll_first: first / n, nll_second: second / n, items: items.length, memory: meter.memory() };
}
