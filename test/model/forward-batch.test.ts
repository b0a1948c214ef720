import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Model } from '../../src/engine/model.js';
import { argmax } from '../../src/engine/sample.js';
import type { Session } from '../../src/engine/session.js';
import { REF6M_DIR, withModel } from '../engine/helpers.js';

const SPECS = ['full', 'h2o(budget=0.5)+kvquant(bits=3)', 'window(sinks=4,recent=24)+fp16', 'full+int(bits=4)', 'snapkv(budget=20)+fp16'];
const PROMPTS = ['The history of the city', 'In 1998 the band released', 'She said that the river', 'A large number of', 'The President of the United States'];

/**
 * One session per cache spec alone and one in a batch, each fed PROMPTS[i], then `steps` greedy tokens
 * decoded both ways; `check(row, own, i, step)` gets session i's batched and own logits at each step.
 * Returns the sessions (alone, batched) after freeing the batch.
 */
function decodeBothWays(model: Model, specs: string[], steps: number, check: (row: Float32Array, own: Float32Array, i: number, step: number) => void): [Session[], Session[]] {
  const make = () => specs.map((cache) => model.session({ cache, chunkSize: 8 }));
  const alone = make();
  const batched = make();
  const vocab = model.config.vocabSize;
  let next = specs.map((_, i) => {
    const ids = model.tokenizer.encode(PROMPTS[i]!, { addBos: true });
    batched[i]!.feed(ids);
    return argmax(alone[i]!.feed(ids));
  });
  const batch = model.batch({ rows: specs.length, chunkSize: 8 });
  for (let step = 0; step < steps; step++) {
    const together = batch.decode(batched, next).slice();
    next = next.map((token, i) => {
      const own = alone[i]!.feed([token]);
      check(together.subarray(i * vocab, (i + 1) * vocab), own, i, step);
      return argmax(own);
    });
  }
  batch.free();
  return [alone, batched];
}

// the layer-group split (6 layers as 4+2 memories) carries every session's rows between memories
describe.each([{ layersPerMemory: undefined, groups: 1 }, { layersPerMemory: 4, groups: 2 }])('batched decoding (layersPerMemory $layersPerMemory)', ({ layersPerMemory, groups }) => {
  let model: Model;
  withModel(REF6M_DIR, (m) => (model = m), { threads: 2, layersPerMemory });

  it('gives each session the logits it gets alone', () => {
    expect(model.weights.groups.count).toBe(groups);
    const [alone, batched] = decodeBothWays(model, SPECS, 12, (row, own, i, step) => {
      let worst = 0;
      for (let v = 0; v < row.length; v++) worst = Math.max(worst, Math.abs(row[v]! - own[v]!));
      expect(worst, `session ${i} (${SPECS[i]}), step ${step}`).toBeLessThan(5e-4); // f32 rounding of another summation order (2.5e-5 seen; logits are ~10)
      expect(argmax(row)).toBe(argmax(own));
    });
    for (let i = 0; i < SPECS.length; i++) {
      expect(batched[i]!.tokens).toEqual(alone[i]!.tokens);
      expect(batched[i]!.cache.layerLengths()).toEqual(alone[i]!.cache.layerLengths());
      expect(batched[i]!.cache.bytes()).toBe(alone[i]!.cache.bytes());
    }
    for (const s of [...alone, ...batched]) s.dispose();
  });
});

// quantized weights the fast way: a batch's matmul gives each token its one-token matvec's numbers
describe('batched decoding of a quantized model (Q4_K_M, the fast way)', () => {
  let model: Model;
  withModel(path.join(REF6M_DIR, 'quantized', 'ref-6m-Q4_K_M.gguf'), (m) => (model = m), { threads: 2 });

  it('gives each session the logits it gets alone, bit for bit', () => {
    const [alone, batched] = decodeBothWays(model, PROMPTS.map(() => 'full'), 8, (row, own, i, step) => {
      expect(row, `session ${i}, step ${step}`).toEqual(own);
    });
    for (const s of [...alone, ...batched]) s.dispose();
  });
});
