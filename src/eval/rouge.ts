import { PorterStemmer } from './porter.js';

/**
 * ROUGE-1/2/L F1 with rouge-score's semantics (the scorer the H2O / Q-Hitter XSum numbers use):
 * lowercase, every run of characters outside [a-z0-9] becomes a space, split; with stemming, tokens
 * longer than 3 characters go through NLTK's Porter stemmer. ROUGE-N counts clipped n-gram
 * overlaps; ROUGE-L is the longest common subsequence of the two whole token lists (rougeL, not the
 * sentence-split rougeLsum).
 */
export interface RougeScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

export interface RougeScores {
  rouge1: RougeScore;
  rouge2: RougeScore;
  rougeL: RougeScore;
}

const stemmer = new PorterStemmer('nltk');
const stemCache = new Map<string, string>();

function stem(token: string): string {
  let s = stemCache.get(token);
  if (s === undefined) {
    s = stemmer.stem(token);
    if (stemCache.size < 100_000) stemCache.set(token, s);
  }
  return s;
}

export function rougeTokenize(text: string, useStemmer = false): string[] {
  const tokens = text.toLowerCase().replace(/[^a-z0-9]+/g, ' ').split(/\s+/).filter((t) => t !== '');
  return useStemmer ? tokens.map((t) => (t.length > 3 ? stem(t) : t)) : tokens;
}

function score(overlap: number, targetCount: number, predictionCount: number): RougeScore {
  const precision = overlap / Math.max(predictionCount, 1);
  const recall = overlap / Math.max(targetCount, 1);
  const fmeasure = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
  return { precision, recall, fmeasure };
}

function ngrams(tokens: readonly string[], n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join(' ');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

export function rougeN(target: readonly string[], prediction: readonly string[], n: number): RougeScore {
  const t = ngrams(target, n);
  const p = ngrams(prediction, n);
  let overlap = 0;
  for (const [gram, count] of t) overlap += Math.min(count, p.get(gram) ?? 0);
  const total = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
  return score(overlap, total(t), total(p));
}

/** Length of the longest common subsequence, two rows of the DP table. */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Int32Array(b.length + 1);
  let cur = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length]!;
}

export function rougeL(target: readonly string[], prediction: readonly string[]): RougeScore {
  if (target.length === 0 || prediction.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  return score(lcsLength(target, prediction), target.length, prediction.length);
}

/** rouge_scorer.RougeScorer(['rouge1', 'rouge2', 'rougeL'], use_stemmer).score(target, prediction). */
export function rouge(target: string, prediction: string, options: { stemmer?: boolean } = {}): RougeScores {
  const t = rougeTokenize(target, options.stemmer ?? true);
  const p = rougeTokenize(prediction, options.stemmer ?? true);
  return { rouge1: rougeN(t, p, 1), rouge2: rougeN(t, p, 2), rougeL: rougeL(t, p) };
}
