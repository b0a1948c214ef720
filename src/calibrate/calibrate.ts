import fs from 'node:fs';
import { valueOutliers } from '../cache/quant/stats.js';
import type { Datatype } from '../cache/quant/store.js';
import { rangeParams } from '../kernels/packed/quantize.js';
import type { CodeBits } from '../kernels/packed/pack.js';
import type { Calibration, LayerCalibration, StreamCalibration } from '../cache/quant/calibfile.js';
import type { ModelIdentity } from '../model/config.js';
import type { Model } from '../engine/model.js';
import { ChannelExtremes, Histogram } from './accumulate.js';
import { LlamaBackprop } from './backprop.js';
import { weightedKMeans } from './kmeans.js';
import type { Vec } from './linear.js';

export interface CalibrateOptions {
  model: ModelIdentity;
  /** Calibration sequences (token ids); position 0 of each is left out of the statistics (the f16 sink). */
  samples: number[][];
  data: string;
  bits: CodeBits[];
  /** Fraction of outliers: keys beyond the outliers/2 and 1 − outliers/2 percentiles per channel; per token for values. */
  outliers: number;
  /** Fisher-weighted k-means (false: plain). */
  fisher: boolean;
  seed: number;
  /** Where progress is saved after each sequence, so an interrupted run resumes (removed when done). */
  stateFile?: string;
  /** Sequences done of 2 × samples (a forward pass for thresholds, then forward and backward). */
  onProgress?: (done: number, total: number) => void;
}

const KEY_STREAMS = ['keys', 'rotatedKeys'] as const;
const STREAMS = [...KEY_STREAMS, 'values'] as const;
type Stream = (typeof STREAMS)[number];
/** Normalising to [−1, 1] (scale = half the range, zero = its middle) is the same for every bit width. */
const UNIT: Datatype = { bits: 4, kind: 'unit', levels: [] };

/**
 * KVQuant's offline calibration. Pass 1 (forward only) takes each layer's per-channel key thresholds
 * (before and after RoPE) from percentiles over all calibration tokens. Pass 2 runs the backward pass
 * and bins every non-outlier number, normalised as the codec normalises it, with its Fisher weight
 * (the squared gradient of the loss): keys by their channel's thresholds, values by their token's
 * range after the per-token outliers are set aside. Then, per layer, stream and bit width, k-means
 * (Fisher-weighted or plain) gives the 2^b-entry datatype, and Q-Norm its shifted signposts.
 */
export function calibrate(m: Model, o: CalibrateOptions): Calibration {
  const c = m.config;
  const d = c.headDim;
  const kvDim = c.numKvHeads * d;
  const backprop = new LlamaBackprop(c, m.weights);
  const counted = o.samples.reduce((a, s) => a + s.length - 1, 0);
  const extremes = Array.from({ length: c.numLayers }, () => ({
    keys: Array.from({ length: c.numKvHeads }, () => new ChannelExtremes(d, counted, o.outliers / 2)),
    rotatedKeys: Array.from({ length: c.numKvHeads }, () => new ChannelExtremes(d, counted, o.outliers / 2)),
  }));
  const histograms = Array.from({ length: c.numLayers }, () => ({ keys: new Histogram(), rotatedKeys: new Histogram(), values: new Histogram() }));
  const job = JSON.stringify({ model: o.model.weights, data: o.data, tokens: counted, outliers: o.outliers });
  let done = 0;
  const saved = o.stateFile && readState(o.stateFile, job);
  if (saved) {
    done = saved.done;
    saved.extremes.forEach((layer, l) => KEY_STREAMS.forEach((s) => layer[s].forEach((e, h) => extremes[l]![s][h]!.restore(e))));
    saved.histograms.forEach((layer, l) => STREAMS.forEach((s) => histograms[l]![s].restore(layer[s])));
  }
  const total = 2 * o.samples.length;
  o.onProgress?.(done, total);
  const save = (): void => {
    if (!o.stateFile) return;
    fs.writeFileSync(`${o.stateFile}.tmp`, JSON.stringify({ job, done, extremes, histograms }));
    fs.renameSync(`${o.stateFile}.tmp`, o.stateFile);
  };

  const step = (): void => {
    done++;
    save();
    o.onProgress?.(done, total);
  };
  for (; done < o.samples.length; step()) {
    backprop.activations(o.samples[done]!, (l, keys, rotatedKeys) => {
      for (let h = 0; h < c.numKvHeads; h++) {
        extremes[l]!.keys[h]!.add(keys.subarray(kvDim), keys.length / kvDim - 1, kvDim, h * d);
        extremes[l]!.rotatedKeys[h]!.add(rotatedKeys.subarray(kvDim), rotatedKeys.length / kvDim - 1, kvDim, h * d);
      }
    });
  }
  const thresholds = extremes.map((layer) => ({ keys: joinHeads(layer.keys), rotatedKeys: joinHeads(layer.rotatedKeys) }));
  const ocap = o.outliers > 0 ? Math.ceil(o.outliers * d) : 0;
  for (; done < total; step()) {
    backprop.gradients(o.samples[done - o.samples.length]!, (l, g) => {
      const hist = histograms[l]!;
      binKeys(hist.keys, g.keys, g.keyGrads, thresholds[l]!.keys, kvDim);
      binKeys(hist.rotatedKeys, g.rotatedKeys, g.rotatedKeyGrads, thresholds[l]!.rotatedKeys, kvDim);
      binValues(hist.values, g.values, g.valueGrads, d, ocap);
    });
  }

  const layers = histograms.map((hist, l): LayerCalibration => {
    const stream = (s: Stream): StreamCalibration => {
      const { x, w } = hist[s].points(o.fisher);
      const luts: Record<number, number[]> = {};
      const qnorm: Record<number, number[]> = {};
      for (const b of o.bits) {
        luts[b] = weightedKMeans(x, w, 2 ** b, o.seed).centroids.map(Math.fround);
        qnorm[b] = hist[s].qnorm(luts[b]);
      }
      return { ...(s === 'values' ? {} : thresholds[l]![s]), luts, qnorm };
    };
    return { keys: stream('keys'), rotatedKeys: stream('rotatedKeys'), values: stream('values') };
  });
  if (o.stateFile) fs.rmSync(o.stateFile, { force: true });
  return { model: o.model, data: o.data, tokens: counted, outliers: o.outliers, fisher: o.fisher, seed: o.seed, bits: o.bits, layers };
}

/** Thresholds of every KV head as [numKvHeads × headDim]. */
function joinHeads(heads: ChannelExtremes[]): { lo: Float32Array; hi: Float32Array } {
  const d = heads[0]!.channels;
  const lo = new Float32Array(heads.length * d);
  const hi = new Float32Array(heads.length * d);
  heads.forEach((e, h) => {
    const t = e.thresholds();
    lo.set(t.lo, h * d);
    hi.set(t.hi, h * d);
  });
  return { lo, hi };
}

/** Keys within their channel's thresholds, normalised by the channel's scale and zero (token 0 left out). */
function binKeys(hist: Histogram, x: Vec, grad: Vec, t: { lo: Float32Array; hi: Float32Array }, kvDim: number): void {
  const params = Array.from(t.lo, (lo, i) => rangeParams(UNIT.kind, UNIT.bits, lo, t.hi[i]!));
  for (let j = kvDim; j < x.length; j++) {
    const i = j % kvDim;
    const p = params[i]!;
    if (p.s > 0 && x[j]! >= t.lo[i]! && x[j]! <= t.hi[i]!) hist.add((x[j]! - p.z) / p.s, grad[j]!);
  }
}

/** Values of each token and head normalised by the range of its dense part (its outliers left out), token 0 left out. */
function binValues(hist: Histogram, x: Vec, grad: Vec, d: number, ocap: number): void {
  for (let row = 1; row < x.length / d; row++) {
    const { dense, outliers } = valueOutliers(Float32Array.from(x.subarray(row * d, (row + 1) * d)), ocap);
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of dense) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
    const p = rangeParams(UNIT.kind, UNIT.bits, lo, hi);
    if (!(p.s > 0)) continue;
    for (let i = 0; i < d; i++) if (!outliers.includes(i)) hist.add((dense[i]! - p.z) / p.s, grad[row * d + i]!);
  }
}

interface SavedState {
  done: number;
  extremes: Record<(typeof KEY_STREAMS)[number], ReturnType<ChannelExtremes['toJSON']>[]>[];
  histograms: Record<Stream, number[][]>[];
}

function readState(file: string, job: string): SavedState | undefined {
  if (!fs.existsSync(file)) return undefined;
  try {
    const s = JSON.parse(fs.readFileSync(file, 'utf8')) as SavedState & { job: string };
    return s.job === job ? s : undefined;
  } catch {
    return undefined; // a torn write: start over
  }
}
