/** Next-token choice from logits: greedy, temperature, nucleus (top-p), with a seeded generator. */

export interface SamplingOptions {
  /** 0 = greedy (argmax). */
  temperature: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches topP. */
  topP: number;
  seed: number;
}

import { SEED_RANGE, seededRandom } from './util/random.js';
import { int, number } from './util/schema.js';

export { seededRandom };

/** The sampling options as the library and the command line check them. */
export const SAMPLING_PARAMS = {
  temperature: number({ min: 0, max: 100, default: 0.8, doc: 'softmax temperature; 0 = greedy' }),
  topP: number({ min: 0, max: 1, default: 1, doc: 'nucleus mass; the most likely token is always kept' }),
  seed: int({ ...SEED_RANGE, default: 0, doc: 'sampling seed' }),
};

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

export class Sampler {
  private readonly random: () => number;
  private readonly probs: Float64Array;
  private readonly order: Int32Array;

  constructor(vocabSize: number, private readonly options: SamplingOptions) {
    this.random = seededRandom(options.seed);
    this.probs = new Float64Array(vocabSize);
    this.order = new Int32Array(vocabSize);
  }

  sample(logits: ArrayLike<number>): number {
    const { temperature, topP } = this.options;
    if (temperature <= 0) return argmax(logits);
    const n = this.probs.length;
    let max = -Infinity;
    for (let i = 0; i < n; i++) max = Math.max(max, logits[i]!);
    let sum = 0;
    for (let i = 0; i < n; i++) sum += this.probs[i] = Math.exp((logits[i]! - max) / temperature);
    for (let i = 0; i < n; i++) this.probs[i] = this.probs[i]! / sum;
    const r = this.random();
    if (topP >= 1) return this.pick(r, n, (i) => i, 1);
    // nucleus: sort the candidates by probability and cut where the mass reaches topP. A token below
    // (1 - topP) / (n - 1) can never be needed to reach topP, so only the rest are sorted.
    const cutoff = (1 - topP) / (n - 1);
    let candidates = 0;
    for (let i = 0; i < n; i++) if (this.probs[i]! >= cutoff) this.order[candidates++] = i;
    if (candidates === 0) this.order[candidates++] = argmax(this.probs); // a flat distribution under a tiny topP
    const sorted = this.order.subarray(0, candidates).sort((a, b) => this.probs[b]! - this.probs[a]!);
    let mass = 0;
    let kept = 0;
    // the most likely token always stays, even at topP 0
    while (kept < candidates && (kept === 0 || mass < topP)) mass += this.probs[sorted[kept++]!]!;
    return this.pick(r, kept, (i) => sorted[i]!, mass);
  }

  private pick(r: number, count: number, id: (i: number) => number, mass: number): number {
    let acc = 0;
    const target = r * mass;
    for (let i = 0; i < count; i++) {
      acc += this.probs[id(i)]!;
      if (target < acc) return id(i);
    }
    return id(count - 1);
  }
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
