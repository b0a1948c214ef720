import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instrumentKernels } from '../../src/bench/kernels.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { STORIES_BIN } from '../engine/helpers.js';

describe("the kernels section's timer", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(STORIES_BIN, { threads: 1 });
  });
  afterAll(() => model.close());

  it('times every product of a decode step once: the fused q/k/v and gate/up ones included', () => {
    let on = false;
    const times = instrumentKernels(model.kernels, () => on);
    const session = model.session({ cache: 'full' });
    session.feed([1, 400, 401]);
    on = true;
    const steps = 4;
    for (let i = 0; i < steps; i++) session.feed([402 + i]);
    on = false;
    session.dispose();
    const { numLayers, hiddenSize, intermediateSize } = model.config;
    const calls = (label: string) => times.byKernel.get(label)?.[1];
    const dtype = 'f32'; // stories260K's weights
    // each layer's output projection and down projection once per token, not once more through `matmuls`
    expect(calls(`matmul ${hiddenSize}×${hiddenSize} ${dtype}`)).toBe(numLayers * steps);
    expect(calls(`matmul ${hiddenSize}×${intermediateSize} ${dtype}`)).toBe(numLayers * steps);
    // the fused products under one label joining their shapes
    expect(calls(`matmul ${intermediateSize}×${hiddenSize} ${dtype} + ${intermediateSize}×${hiddenSize} ${dtype}`)).toBe(numLayers * steps);
    const qkv = [...times.byKernel.keys()].find((l) => l.split(' + ').length === 3);
    expect(qkv).toBeDefined();
    expect(calls(qkv!)).toBe(numLayers * steps);
  });
});
