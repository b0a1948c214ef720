import { midpoints, nearest } from '../cache/quant/lut.js';
import { Moments, quantile } from '../cache/quant/stats.js';
import type { Vec } from './linear.js';

/**
 * Exact per-channel percentile thresholds over a stream of rows without keeping the rows: for each
 * channel, the `keep` smallest and `keep` largest numbers seen, enough for the two neighbours that
 * the interpolated quantile at q·(N − 1) reads, for up to `total` numbers per channel.
 */
export class ChannelExtremes {
  private readonly keep: number;
  private low: Float64Array[];
  private high: Float64Array[];
  private count = 0;

  constructor(readonly channels: number, total: number, readonly q: number) {
    this.keep = Math.floor(q * (total - 1)) + 2;
    this.low = Array.from({ length: channels }, () => new Float64Array());
    this.high = Array.from({ length: channels }, () => new Float64Array());
  }

  /** Adds `rows` rows whose channel c is x[r·stride + offset + c]. */
  add(x: Vec, rows: number, stride: number, offset: number): void {
    const column = new Float64Array(rows);
    for (let c = 0; c < this.channels; c++) {
      for (let r = 0; r < rows; r++) column[r] = x[r * stride + offset + c]!;
      this.low[c] = concat(this.low[c]!, column).sort().slice(0, this.keep);
      const high = concat(this.high[c]!, column).sort();
      this.high[c] = high.slice(Math.max(0, high.length - this.keep));
    }
    this.count += rows;
  }

  /** Per channel: the q and 1 − q quantiles (numpy's linear interpolation) of every number added. */
  thresholds(): { lo: Float32Array; hi: Float32Array } {
    const n = this.count;
    const at = (sorted: Float64Array, first: number, pos: number): number => {
      const i = Math.floor(pos);
      const f = pos - i;
      const a = sorted[i - first]!;
      return f > 0 && i + 1 < n ? a * (1 - f) + sorted[i + 1 - first]! * f : a;
    };
    const lo = new Float32Array(this.channels);
    const hi = new Float32Array(this.channels);
    for (let c = 0; c < this.channels; c++) {
      lo[c] = at(this.low[c]!, 0, this.q * (n - 1));
      hi[c] = at(this.high[c]!, n - this.high[c]!.length, (1 - this.q) * (n - 1));
    }
    return { lo, hi };
  }

  toJSON(): { count: number; low: number[][]; high: number[][] } {
    return { count: this.count, low: this.low.map((a) => [...a]), high: this.high.map((a) => [...a]) };
  }

  restore(state: { count: number; low: number[][]; high: number[][] }): void {
    this.count = state.count;
    this.low = state.low.map((a) => Float64Array.from(a));
    this.high = state.high.map((a) => Float64Array.from(a));
  }
}

function concat(a: Float64Array, b: Float64Array): Float64Array {
  const out = new Float64Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Bins of normalised numbers on [−1, 1]; fine enough that a bin's mean stands for its numbers. */
export const BINS = 2048;

/**
 * Normalised numbers of one stream of one layer, binned on [−1, 1]: per bin the Fisher weight (Σ g²)
 * and Σ g²·y for the weighted k-means, and the count, Σ y and Σ y² for the plain one and Q-Norm.
 * A bin's points are its weighted (or plain) mean: the k-means objective differs from the one over
 * the numbers themselves by the within-bin spread only, a constant.
 */
export class Histogram {
  readonly fisher = new Float64Array(BINS);
  readonly fisherY = new Float64Array(BINS);
  readonly count = new Float64Array(BINS);
  readonly sumY = new Float64Array(BINS);
  readonly sumYY = new Float64Array(BINS);

  add(y: number, grad: number): void {
    const b = Math.min(BINS - 1, Math.max(0, Math.floor(((y + 1) / 2) * BINS)));
    const w = grad * grad;
    this.fisher[b]! += w;
    this.fisherY[b]! += w * y;
    this.count[b]! += 1;
    this.sumY[b]! += y;
    this.sumYY[b]! += y * y;
  }

  /** The bins as weighted points: Fisher-weighted or plain. */
  points(weighted: boolean): { x: Float64Array; w: Float64Array } {
    const w = weighted ? this.fisher : this.count;
    const s = weighted ? this.fisherY : this.sumY;
    return { x: Float64Array.from(w, (wi, b) => (wi > 0 ? s[b]! / wi : 0)), w };
  }

  /** Q-Norm signposts for `levels`: every binned number counted once, quantized to its nearest level. */
  qnorm(levels: readonly number[]): number[] {
    const mids = midpoints(levels);
    const m = new Moments();
    for (let b = 0; b < BINS; b++) {
      const n = this.count[b]!;
      if (n > 0) m.add(this.sumY[b]! / n, levels[nearest(mids, this.sumY[b]! / n)]!, n, this.sumYY[b]!);
    }
    return m.normalise(levels);
  }

  toJSON(): number[][] {
    return [this.fisher, this.fisherY, this.count, this.sumY, this.sumYY].map((a) => [...a]);
  }

  restore(state: number[][]): void {
    [this.fisher, this.fisherY, this.count, this.sumY, this.sumYY].forEach((a, i) => a.set(state[i]!));
  }
}
