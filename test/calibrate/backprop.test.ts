// The backward pass against central finite differences (in f64) on sampled keys and values of every layer.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LlamaBackprop, type LayerGradients, type Perturbation } from '../../src/calibrate/backprop.js';
import { loadModel, type Model } from '../../src/model/model.js';
import { seededRandom } from '../../src/util/random.js';
import { REF6M, STORIES } from '../model/fixtures.js';

const TOKENS = 16;
const EPS = 1e-3;

/**
 * `count` elements of a layer's stream: the largest gradient, then random ones at least a tenth of it
 * (a relative error of a near-zero gradient measures only the finite difference's rounding).
 */
function sample(g: Float32Array | Float64Array, count: number, random: () => number): number[] {
  let top = 0;
  for (let i = 0; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[top]!)) top = i;
  const big = [...g.keys()].filter((i) => Math.abs(g[i]!) >= 0.1 * Math.abs(g[top]!) && i !== top);
  const picked = [top];
  while (picked.length < count && big.length) picked.push(big.splice(Math.floor(random() * big.length), 1)[0]!);
  return picked;
}

function gradientCheck(model: Model, ids: number[], perStream: number): number {
  const f32 = new LlamaBackprop(model.kernels, model.config, model.weights, 'f32');
  const f64 = new LlamaBackprop(model.kernels, model.config, model.weights, 'f64');
  const grads = new Map<number, LayerGradients>();
  f32.gradients(ids, (l, g) => grads.set(l, g));
  expect(grads.size).toBe(model.config.numLayers);
  const random = seededRandom(7);
  let worst = 0;
  for (let layer = 0; layer < model.config.numLayers; layer++) {
    for (const stream of ['key', 'value'] as const) {
      const g = stream === 'key' ? grads.get(layer)!.keyGrads : grads.get(layer)!.valueGrads;
      for (const index of sample(g, perStream, random)) {
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

describe.each([
  ['stories260K', path.join(STORIES, 'stories260K.bin'), 3],
  ['ref-6m', REF6M, 1],
])('%s backward pass', (name, file, perStream) => {
  let model: Model;
  let ids: number[];
  beforeAll(async () => {
    model = await loadModel(file, { threads: 1 });
    ids = name === 'ref-6m'
      ? model.tokenizer.encode('The history of the United States began when the first people crossed into the new land, and the story of the nation that followed was long and full of change').slice(0, TOKENS)
      : [1, ...model.tokenizer.encode('Once upon a time, there was a little girl named Lily. She liked to play with her toys in the park every day')].slice(0, TOKENS);
    expect(ids.length).toBe(TOKENS);
  });
  afterAll(() => model.close());

  it('matches central finite differences on every layer\'s keys and values', () => {
    const worst = gradientCheck(model, ids, perStream);
    console.log(`${name}: worst relative error of the backward pass vs finite differences ${worst.toExponential(2)}`);
  });

  it('computes the same loss as the engine\'s forward pass', () => {
    const logprobs = model.session().score(ids);
    const engine = -logprobs.reduce((a, b) => a + b, 0) / logprobs.length;
    const loss = new LlamaBackprop(model.kernels, model.config, model.weights).loss(ids);
    expect(loss).toBeCloseTo(engine, 4);
  });
});
