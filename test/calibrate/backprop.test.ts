// The backward pass against central finite differences (in f64) on sampled keys and values of every layer.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlamaBackprop, type LayerGradients, type Perturbation } from '../../src/calibrate/backprop.js';
import { calibrationSamples } from '../../src/calibrate/data.js';
import { UnsupportedModelError } from '../../src/errors.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { REF6M, STORIES } from '../model/fixtures.js';

const EPS = 1e-3;

/**
 * Elements of a layer's stream [tokens × kvDim] to check: the largest gradient, and the largest among
 * tokens from `from` on (the second attention block), where the gradients are not near zero (a relative
 * error of a near-zero gradient measures only the finite difference's rounding).
 */
function sample(g: Float32Array | Float64Array, from: number): number[] {
  const largest = (start: number): number => {
    let top = start;
    for (let i = start; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[top]!)) top = i;
    return top;
  };
  return from < g.length ? [largest(0), largest(from)] : [largest(0)];
}

function gradientCheck(model: Model, ids: number[]): number {
  const f32 = new LlamaBackprop(model.config, model.weights, 'f32');
  const f64 = new LlamaBackprop(model.config, model.weights, 'f64');
  const grads = new Map<number, LayerGradients>();
  f32.gradients(ids, (l, g) => grads.set(l, g));
  expect(grads.size).toBe(model.config.numLayers);
  let worst = 0;
  for (let layer = 0; layer < model.config.numLayers; layer++) {
    for (const stream of ['key', 'value'] as const) {
      const g = stream === 'key' ? grads.get(layer)!.keyGrads : grads.get(layer)!.valueGrads;
      for (const index of sample(g, 256 * model.config.numKvHeads * model.config.headDim)) {
        const at = (delta: number): Perturbation => ({ layer, stream, index, delta });
        const fd = (f64.loss(ids, at(EPS)) - f64.loss(ids, at(-EPS))) / (2 * EPS);
        const rel = Math.abs(g[index]! - fd) / Math.abs(fd);
        worst = Math.max(worst, rel);
        expect(rel, `layer ${layer} ${stream}[${index}]: backward ${g[index]}, finite difference ${fd}`).toBeLessThan(1e-2);
      }
    }
  }
  return worst;
}

// stories260K over 264 tokens: attention runs in blocks of 256 queries, so both blocks are checked
describe.each([
  ['stories260K', path.join(STORIES, 'stories260K.bin'), 264],
  ['ref-6m', REF6M, 16],
])('%s backward pass', (name, file, tokens) => {
  let model: Model;
  let ids: number[];
  beforeAll(async () => {
    model = await loadModel(file, { threads: 1 });
    ids = name === 'ref-6m'
      ? model.tokenizer.encode('The history of the United States began when the first people crossed into the new land, and the story of the nation that followed').slice(0, tokens)
      : calibrationSamples('stories260k-calibration', model.tokenizer, 1, tokens)[0]!;
    expect(ids.length).toBe(tokens);
  });
  afterAll(() => model.close());

  it('matches central finite differences on every layer\'s keys and values', () => {
    const worst = gradientCheck(model, ids);
    console.log(`${name}: worst relative error of the backward pass vs finite differences ${worst.toExponential(2)}`);
  });

  it('refuses per-head q/k norms (Qwen3), which it does not differentiate', () => {
    expect(() => new LlamaBackprop({ ...model.config, architecture: 'qwen3' }, model.weights)).toThrow(UnsupportedModelError);
  });

  it('computes the same loss as the engine\'s forward pass', () => {
    const logprobs = model.session({ cache: 'full+fp32' }).score(ids); // backprop keeps keys and values in f32
    const engine = -logprobs.reduce((a, b) => a + b, 0) / logprobs.length;
    const loss = new LlamaBackprop(model.config, model.weights).loss(ids);
    expect(loss).toBeCloseTo(engine, 4);
  });
});

describe('ref-6m split over several memories', () => {
  const models: Model[] = [];
  beforeAll(async () => {
    for (const layersPerMemory of [undefined, 2, 1]) models.push(await loadModel(REF6M, { threads: 1, layersPerMemory }));
  });
  afterAll(async () => {
    for (const m of models) await m.close();
  });

  it('gives the same loss and gradients as one memory, bit for bit (SIMD f32, and the f64 reference on one layer per memory)', () => {
    const [one, ...split] = models;
    expect(split.map((m) => m.weights.groups.count)).toEqual([3, 6]);
    const ids = one!.tokenizer.encode('Once upon a time there was a little town by the sea, and every morning the boats went out.').slice(0, 16);
    const run = (m: Model, precision: 'f32' | 'f64') => {
      const grads: LayerGradients[] = [];
      const loss = new LlamaBackprop(m.config, m.weights, precision).gradients(ids, (l, g) => (grads[l] = g));
      return { loss, grads };
    };
    const expected = run(one!, 'f32');
    expect(expected.grads).toHaveLength(one!.config.numLayers);
    for (const m of split) expect(run(m, 'f32'), `${m.weights.groups.count} memories`).toEqual(expected);
    expect(run(split[1]!, 'f64')).toEqual(run(one!, 'f64'));
  });
});

