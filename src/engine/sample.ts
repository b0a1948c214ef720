/**
 * Next-token choice from logits, through llama.cpp's sampler chain and order: repetition, presence and
 * frequency penalties → top-k → top-p → min-p → temperature → a seeded draw (temperature 0: argmax of
 * the penalized logits). Top-p and min-p therefore see the distribution at temperature 1, as in
 * llama.cpp (Hugging Face applies the temperature first).
 */

export interface SamplingOptions {
  /** 0 = greedy (argmax). */
  temperature: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches topP. */
  topP: number;
  seed: number;
  /** Keep the topK most likely tokens (0: all). */
  topK?: number;
  /** Keep the tokens at least minP times as likely as the most likely one (0: all). */
  minP?: number;
  /** CTRL's repetition penalty: a positive logit of a token in the last repeatLastN is divided by it, a negative one multiplied (1: none). */
  repeatPenalty?: number;
  /** Tokens of history the penalties look back on (-1: all of it, 0: none). */
  repeatLastN?: number;
  /** OpenAI's presence penalty: subtracted once from the logit of every token in that history. */
  presencePenalty?: number;
  /** OpenAI's frequency penalty: subtracted from a token's logit once per occurrence in that history. */
  frequencyPenalty?: number;
}

import { SEED_RANGE, seededRandom } from '../util/random.js';
import { int, number } from '../util/schema.js';

export { seededRandom };

/** The sampling options as the library and the command line check them (defaults: the library's; every filter off). */
export const SAMPLING_PARAMS = {
  temperature: number({ min: 0, max: 100, default: 0.8, doc: 'softmax temperature; 0 = greedy' }),
  topP: number({ min: 0, max: 1, default: 1, doc: 'nucleus mass; the most likely token is always kept' }),
  seed: int({ ...SEED_RANGE, default: 0, doc: 'sampling seed' }),
  topK: int({ min: 0, default: 0, doc: 'most likely tokens kept; 0 = all' }),
  minP: number({ min: 0, max: 1, default: 0, doc: 'tokens kept at least this fraction as likely as the most likely; 0 = all' }),
  repeatPenalty: number({ min: 0, exclusiveMin: true, max: 100, default: 1, doc: 'repetition penalty (CTRL, as llama.cpp applies it); 1 = none' }),
  repeatLastN: int({ min: -1, default: 64, doc: 'tokens of history the penalties look back on; -1 = all, 0 = none' }),
  presencePenalty: number({ min: -2, max: 2, default: 0, doc: 'subtracted from the logit of each token in that history' }),
  frequencyPenalty: number({ min: -2, max: 2, default: 0, doc: 'subtracted from a token\'s logit per occurrence in that history' }),
};

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

export class Sampler {
  private readonly random: () => number;
  private readonly options: Required<SamplingOptions>;
  /** The penalized logits of the current step. */
  private readonly logits: Float64Array;
  private readonly probs: Float64Array;
  /** Candidate token ids; the first `count` are kept. */
  private readonly order: Int32Array;
  /** What the penalties look back on: the prompt, then every sampled token. */
  private readonly history: number[] = [];

  constructor(vocabSize: number, options: SamplingOptions) {
    this.options = { topK: 0, minP: 0, repeatPenalty: 1, repeatLastN: 64, presencePenalty: 0, frequencyPenalty: 0, ...options };
    this.random = seededRandom(options.seed);
    this.logits = new Float64Array(vocabSize);
    this.probs = new Float64Array(vocabSize);
    this.order = new Int32Array(vocabSize);
  }

  /** Adds tokens to the history the penalties see (a prompt; sample() adds what it samples). */
  accept(tokens: readonly number[]): void {
    const n = this.options.repeatLastN;
    for (const t of tokens) this.history.push(t);
    if (n >= 0 && this.history.length > 2 * n + 64) this.history.splice(0, this.history.length - n); // kept bounded
  }

  /** Draws the next token and adds it to the history. */
  sample(logits: ArrayLike<number>): number {
    const count = this.chain(logits);
    let token: number;
    if (count === 1) {
      if (this.options.temperature > 0) this.random(); // one draw per token whatever is kept: a seed's stream does not depend on the filters
      token = this.order[0]!;
    } else {
      const target = this.random() * this.weigh(count);
      let acc = 0;
      token = this.order[count - 1]!;
      for (let i = 0; i < count; i++) {
        acc += this.probs[this.order[i]!]!;
        if (target < acc) {
          token = this.order[i]!;
          break;
        }
      }
    }
    this.accept([token]);
    return token;
  }

  /** The distribution the next token is drawn from (0 for every token the chain drops); does not draw. A view, reused. */
  distribution(logits: ArrayLike<number>): Float64Array {
    const count = this.chain(logits);
    const total = count === 1 ? (this.probs[this.order[0]!] = 1) : this.weigh(count);
    const kept = new Set(this.order.subarray(0, count));
    for (let i = 0; i < this.probs.length; i++) this.probs[i] = kept.has(i) ? this.probs[i]! / total : 0;
    return this.probs;
  }

  /** Runs penalties, top-k, top-p and min-p; the kept tokens are order[0..count). */
  private chain(raw: ArrayLike<number>): number {
    const { temperature, topK, topP, minP } = this.options;
    const l = this.penalize(raw);
    const n = l.length;
    if (temperature <= 0) {
      this.order[0] = argmax(l);
      return 1;
    }
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, l[i]!);
    let count: number;
    let sorted = false;
    if (topK > 0 && topK < n) {
      count = this.topK(l, topK);
      sorted = true;
    } else {
      for (let i = 0; i < n; i++) this.order[i] = i;
      count = n;
    }
    if (topP < 1) {
      let z = 0; // top-p renormalizes over what top-k kept
      for (let i = 0; i < count; i++) z += Math.exp(l[this.order[i]!]! - max);
      if (!sorted) {
        // a token below (1 - topP) / (count - 1) of the mass can never be needed to reach topP: only the rest is sorted
        const cutoff = (z * (1 - topP)) / (count - 1);
        let kept = 0;
        for (let i = 0; i < count; i++) if (Math.exp(l[this.order[i]!]! - max) >= cutoff) this.order[kept++] = this.order[i]!;
        if (kept === 0) this.order[kept++] = argmax(l); // a flat distribution under a tiny topP
        this.order.subarray(0, kept).sort((a, b) => l[b]! - l[a]!);
        count = kept;
        sorted = true;
      }
      let mass = 0;
      let kept = 0;
      // the most likely token always stays, even at topP 0
      while (kept < count && (kept === 0 || mass < topP * z)) mass += Math.exp(l[this.order[kept++]!]! - max);
      count = kept;
    }
    if (minP > 0) {
      const floor = max + Math.log(minP); // p ≥ minP · p_max, in logits
      let kept = 0;
      for (let i = 0; i < count; i++) if (l[this.order[i]!]! >= floor) this.order[kept++] = this.order[i]!;
      count = kept;
    }
    return count;
  }

  /** The logits with the penalties of the last repeatLastN tokens applied, as llama.cpp's penalties sampler does. */
  private penalize(raw: ArrayLike<number>): Float64Array {
    const l = this.logits;
    for (let i = 0; i < l.length; i++) l[i] = raw[i]!;
    const { repeatPenalty, repeatLastN, presencePenalty, frequencyPenalty } = this.options;
    if ((repeatPenalty === 1 && presencePenalty === 0 && frequencyPenalty === 0) || repeatLastN === 0) return l;
    const counts = new Map<number, number>();
    const from = repeatLastN < 0 ? 0 : Math.max(0, this.history.length - repeatLastN);
    for (let i = from; i < this.history.length; i++) counts.set(this.history[i]!, (counts.get(this.history[i]!) ?? 0) + 1);
    for (const [id, count] of counts) {
      if (id < 0 || id >= l.length) continue;
      // dividing a negative logit would make the token more likely: it is multiplied instead (llama.cpp, HF)
      const x = l[id]! <= 0 ? l[id]! * repeatPenalty : l[id]! / repeatPenalty;
      l[id] = x - count * frequencyPenalty - presencePenalty;
    }
    return l;
  }

  /** The k largest logits' ids into order[0..k), most likely first (a min-heap of k: O(n log k)). */
  private topK(l: Float64Array, k: number): number {
    const heap = this.order; // heap[0] is the smallest of the k kept so far
    const less = (a: number, b: number) => l[a]! < l[b]! || (l[a] === l[b] && a > b);
    const down = (i: number, size: number) => {
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let least = i;
        if (left < size && less(heap[left]!, heap[least]!)) least = left;
        if (right < size && less(heap[right]!, heap[least]!)) least = right;
        if (least === i) return;
        [heap[i], heap[least]] = [heap[least]!, heap[i]!];
        i = least;
      }
    };
    for (let i = 0; i < k; i++) heap[i] = i;
    for (let i = (k >> 1) - 1; i >= 0; i--) down(i, k);
    for (let i = k; i < l.length; i++) {
      if (less(heap[0]!, i)) {
        heap[0] = i;
        down(0, k);
      }
    }
    heap.subarray(0, k).sort((a, b) => l[b]! - l[a]! || a - b);
    return k;
  }

  /** Fills probs for the kept tokens with their weights at the temperature; returns their sum. */
  private weigh(count: number): number {
    const l = this.logits;
    let max = -Infinity;
    for (let i = 0; i < count; i++) max = Math.max(max, l[this.order[i]!]!);
    let sum = 0;
    for (let i = 0; i < count; i++) {
      const id = this.order[i]!;
      sum += this.probs[id] = Math.exp((l[id]! - max) / this.options.temperature);
    }
    return sum;
  }
}

/** The ids of the k largest values, largest first (ties: the lower id first); for a small k. */
export function topIndices(values: ArrayLike<number>, k: number): number[] {
  const top: number[] = [];
  for (let i = 0; i < values.length && k > 0; i++) {
    if (top.length === k) {
      if (values[i]! <= values[top[k - 1]!]!) continue;
      top.pop();
    }
    let at = top.length;
    while (at > 0 && values[top[at - 1]!]! < values[i]!) at--;
    top.splice(at, 0, i);
  }
  return top;
}

/** log-softmax of one row, in f64. */
export function logSoftmax(logits: ArrayLike<number>, out: Float64Array = new Float64Array(logits.length)): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - lse;
  return out;
}
