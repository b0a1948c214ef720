// Offline calibration on stories260K: exact percentile thresholds, datatypes, resuming, and the file's model check.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCalibration, writeCalibration, type Calibration } from '../../src/cache/quant/calibfile.js';
import { quantile } from '../../src/cache/quant/stats.js';
import { ChannelExtremes } from '../../src/calibrate/accumulate.js';
import { LlamaBackprop } from '../../src/calibrate/backprop.js';
import { calibrate, type CalibrateOptions } from '../../src/calibrate/calibrate.js';
import { calibrationSamples } from '../../src/calibrate/data.js';
import { randomLlama, writeHfDir } from '../../src/dev/write.js';
import { CalibrationError, UnsupportedModelError } from '../../src/errors.js';
import type { ModelIdentity } from '../../src/model/config.js';
import { modelIdentity } from '../../src/model/identity.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { seededRandom } from '../../src/util/random.js';
import { REF6M, STORIES, TINY, tinyTokenizerJson } from '../model/fixtures.js';

describe('ChannelExtremes', () => {
  it.each([0, 0.005, 0.05])('gives the exact q = %f percentiles of numbers added in batches', (q) => {
    const random = seededRandom(11);
    const channels = 3;
    const rows = [700, 1, 350];
    const e = new ChannelExtremes(channels, rows.reduce((a, b) => a + b), q);
    const all: number[][] = [[], [], []];
    for (const n of rows) {
      const x = Float32Array.from({ length: n * (channels + 1) }, () => Math.fround((random() - 0.5) ** 3));
      e.add(x, n, channels + 1, 1);
      for (let r = 0; r < n; r++) for (let c = 0; c < channels; c++) all[c]!.push(x[r * (channels + 1) + 1 + c]!);
    }
    const t = e.thresholds();
    for (let c = 0; c < channels; c++) {
      const sorted = Float64Array.from(all[c]!).sort();
      expect(t.lo[c]).toBe(Math.fround(quantile(sorted, q)));
      expect(t.hi[c]).toBe(Math.fround(quantile(sorted, 1 - q)));
    }
  });
});

describe('calibrate on stories260K', () => {
  let model: Model;
  let identity: ModelIdentity;
  let options: CalibrateOptions;
  let result: Calibration;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-calib-'));
  beforeAll(async () => {
    model = await loadModel(path.join(STORIES, 'stories260K.bin'), { threads: 1 });
    identity = modelIdentity('stories260K', model.config, model.weights);
    const samples = calibrationSamples('stories260k-calibration', model.tokenizer, 4, 96);
    options = { model: identity, samples, data: 'stories260k-calibration', bits: [2, 3, 4], outliers: 0.05, fisher: true, seed: 1 };
    result = calibrate(model, options);
  });
  afterAll(async () => {
    await model.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('takes key thresholds from percentiles of all calibration keys (the first token left out)', () => {
    const c = model.config;
    const kvDim = c.numKvHeads * c.headDim;
    const perChannel: number[][][] = Array.from({ length: c.numLayers }, () => Array.from({ length: kvDim }, () => []));
    const bp = new LlamaBackprop(c, model.weights);
    for (const ids of options.samples) {
      bp.activations(ids, (l, keys) => {
        for (let j = kvDim; j < keys.length; j++) perChannel[l]![j % kvDim]!.push(keys[j]!);
      });
    }
    for (let l = 0; l < c.numLayers; l++) {
      for (let i = 0; i < kvDim; i++) {
        const sorted = Float64Array.from(perChannel[l]![i]!).sort();
        expect(result.layers[l]!.keys.lo![i]).toBe(Math.fround(quantile(sorted, 0.025)));
        expect(result.layers[l]!.keys.hi![i]).toBe(Math.fround(quantile(sorted, 0.975)));
      }
    }
  });

  it('makes sorted 2^b-entry datatypes on [−1, 1] for every layer, stream and bit width', () => {
    for (const layer of result.layers) {
      for (const s of [layer.keys, layer.rotatedKeys, layer.values]) {
        for (const b of [2, 3, 4]) {
          const lut = s.luts[b]!;
          expect(lut).toHaveLength(2 ** b);
          expect([...lut].sort((x, y) => x - y)).toEqual(lut);
          expect(Math.min(...lut)).toBeGreaterThanOrEqual(-1);
          expect(Math.max(...lut)).toBeLessThanOrEqual(1);
          expect(s.qnorm[b]).toHaveLength(2 ** b);
        }
      }
    }
  });

  it('weights k-means by Fisher information (plain k-means gives other signposts)', () => {
    const plain = calibrate(model, { ...options, fisher: false });
    expect(plain.layers[0]!.keys.lo).toEqual(result.layers[0]!.keys.lo);
    expect(plain.layers[0]!.values.luts[3]).not.toEqual(result.layers[0]!.values.luts[3]);
  });

  it('resumes an interrupted run to the same result', () => {
    const stateFile = path.join(dir, 'state.json');
    expect(() => calibrate(model, { ...options, stateFile, onProgress: (done) => { if (done === 5) throw new Error('interrupted'); } })).toThrow('interrupted');
    expect(fs.existsSync(stateFile)).toBe(true);
    let first = -1;
    const resumed = calibrate(model, { ...options, stateFile, onProgress: (done) => { if (first < 0) first = done; } });
    expect(first).toBe(5);
    expect(resumed).toEqual(result);
    expect(fs.existsSync(stateFile)).toBe(false);
  });

  it('writes a file that reads back for the same model and is refused, naming both, for another', async () => {
    const file = path.join(dir, 'stories.calib');
    writeCalibration(file, result);
    expect(readCalibration(file, identity)).toEqual(result);
    const other = await loadModel(REF6M, { threads: 1 });
    try {
      const otherId = modelIdentity('ref-6m', other.config, other.weights);
      expect(() => readCalibration(file, otherId)).toThrow(CalibrationError);
      expect(() => readCalibration(file, otherId)).toThrow(/calibrated for stories260K .* not for the model in use, ref-6m/);
    } finally {
      await other.close();
    }
    fs.writeFileSync(file, '{"format":"kvpack-calibration","version":99}');
    expect(() => readCalibration(file, identity)).toThrow(/version 99/);
  });
});

describe('calibrate on ref-6m split over several memories', () => {
  const models: Model[] = [];
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-calib-split-'));
  beforeAll(async () => {
    for (const layersPerMemory of [undefined, 2, 1]) models.push(await loadModel(REF6M, { threads: 1, layersPerMemory }));
  });
  afterAll(async () => {
    for (const m of models) await m.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes the same file as one memory, and kvquant(calib=FILE) runs on the split model as on one memory', () => {
    const [one, ...split] = models;
    expect(split.map((m) => m.weights.groups.count)).toEqual([3, 6]);
    const samples = calibrationSamples('c4-calibration', one!.tokenizer, 2, 24);
    const run = (m: Model): Calibration => calibrate(m, { model: m.identity(), samples, data: 'c4-calibration', bits: [2], outliers: 0.05, fisher: true, seed: 1 });
    const expected = run(one!);
    const file = path.join(dir, 'ref-6m.calib');
    writeCalibration(file, expected);
    const ids = samples[0]!.slice(0, 16);
    const logits = (m: Model, cache = `kvquant(bits=2,calib=${JSON.stringify(file)})`): Float32Array => m.session({ cache }).feed(ids).slice();
    const expectedLogits = logits(one!);
    expect(expectedLogits).not.toEqual(logits(one!, 'kvquant(bits=2)')); // the file's thresholds and datatypes are in use
    for (const m of split) {
      const got = run(m);
      expect(got, `${m.weights.groups.count} memories`).toEqual(expected);
      const splitFile = path.join(dir, `split-${m.weights.groups.count}.calib`);
      writeCalibration(splitFile, got);
      expect(fs.readFileSync(splitFile)).toEqual(fs.readFileSync(file));
      expect(logits(m), `${m.weights.groups.count} memories`).toEqual(expectedLogits);
    }
  });
});

describe('calibrate refuses what its backward pass does not model', () => {
  it('Qwen3 per-head q/k norms: a typed error naming the model, not wrong gradients', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-calib-qwen3-'));
    const tokenizer = path.join(dir, 'tokenizer.json');
    fs.writeFileSync(tokenizer, tinyTokenizerJson(TINY.vocabSize));
    await writeHfDir(path.join(dir, 'qwen3'), randomLlama({ ...TINY, architecture: 'qwen3' }), tokenizer);
    const model = await loadModel(path.join(dir, 'qwen3'), { threads: 1 });
    try {
      const identity = modelIdentity('qwen3', model.config, model.weights);
      const options: CalibrateOptions = { model: identity, samples: [[1, 2, 3, 4]], data: 'x', bits: [3], outliers: 0.01, fisher: true, seed: 1 };
      expect(() => calibrate(model, options)).toThrow(UnsupportedModelError);
      expect(() => calibrate(model, options)).toThrow(/q\/k norms/);
    } finally {
      await model.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
