import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import type { Model } from '../engine/model.js';
import { sharedDataDir } from './data.js';
import { CacheMeter, type CacheMemory } from './memory.js';
import { rouge } from './rouge.js';

/**
 * XSum summarization as H2O and Q-Hitter run it: each item of ../shared/data/xsum/xsum_0shot.jsonl
 * is a prompt ending in "Summary:" with its own sampling parameters and stop strings; the generated
 * summary is scored against `summary_gt` with ROUGE-1/2/L F1 (rouge-score, Porter stemming).
 * Items whose prompt and answer do not fit the model's context are passed over (counted in
 * `skipped`), so a short-context model still gets `items` summaries.
 */
export interface XsumItem {
  article: string;
  summary_gt: string;
  temperature: number;
  top_p: number;
  max_tokens: number;
  stop: string[];
}

export function loadXsum(): XsumItem[] {
  const file = path.join(sharedDataDir(), 'xsum/xsum_0shot.jsonl');
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message} (the evaluation data lives in ../shared/data)`);
  }
  return text.split('\n').filter((l) => l.trim()).map((line, i) => {
    const o = JSON.parse(line) as Partial<XsumItem>;
    if (typeof o.article !== 'string' || typeof o.summary_gt !== 'string') throw new UsageError(`${file}: line ${i + 1} has no article/summary_gt`);
    return {
      article: o.article,
      summary_gt: o.summary_gt,
      temperature: o.temperature ?? 0,
      top_p: o.top_p ?? 1,
      max_tokens: o.max_tokens ?? 64,
      stop: Array.isArray(o.stop) ? o.stop : [],
    };
  });
}

export interface XsumOptions {
  cache: string;
  items: number;
  seed: number;
  stemmer?: boolean;
  onProgress?: (done: number, total: number) => void;
  /** Called with each generated summary (for `kvpack eval xsum --json` and debugging). */
  onSummary?: (index: number, summary: string) => void;
}

export interface XsumResult {
  rouge1: number;
  rouge2: number;
  rougeL: number;
  items: number;
  skipped: number;
  memory: CacheMemory;
}

export async function xsum(model: Model, o: XsumOptions): Promise<XsumResult> {
  const all = loadXsum();
  const tok = model.tokenizer;
  const limit = model.config.maxContext;
  const chosen: { index: number; item: XsumItem; ids: number[] }[] = [];
  let skipped = 0;
  for (let i = 0; i < all.length && chosen.length < o.items; i++) {
    const item = all[i]!;
    const ids = tok.encode(item.article);
    if (ids.length + item.max_tokens > limit) skipped++;
    else chosen.push({ index: i, item, ids });
  }
  if (chosen.length === 0) throw new UsageError(`no XSum prompt fits the model's context of ${limit} tokens`);
  const total = chosen.reduce((n, c) => n + c.ids.length + c.item.max_tokens, 0);
  let done = 0;
  const sums = { rouge1: 0, rouge2: 0, rougeL: 0 };
  const session = model.session({ cache: o.cache });
  const meter = new CacheMeter(session);
  try {
    for (const { index, item, ids } of chosen) {
      session.reset();
      let summary = '';
      const stream = session.generate(ids, {
        maxTokens: item.max_tokens,
        temperature: item.temperature,
        topP: item.top_p,
        seed: o.seed + index,
        stop: item.stop,
      });
      for await (const piece of stream) summary += piece;
      summary = summary.trim();
      o.onSummary?.(index, summary);
      const s = rouge(item.summary_gt, summary, { stemmer: o.stemmer ?? true });
      sums.rouge1 += s.rouge1.fmeasure;
      sums.rouge2 += s.rouge2.fmeasure;
      sums.rougeL += s.rougeL.fmeasure;
      meter.record();
      done += ids.length + item.max_tokens;
      o.onProgress?.(done, total);
    }
  } finally {
    session.dispose();
  }
  const n = chosen.length;
  return {
    rouge1: sums.rouge1 / n,
    rouge2: sums.rouge2 / n,
    rougeL: sums.rougeL / n,
    items: n,
    skipped,
    memory: meter.memory(),
  };
}
