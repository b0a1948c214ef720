import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeHfDir } from '../../src/dev/write.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { argmax } from '../../src/engine/sample.js';
import { loadCheckpoint } from '../../src/model/load.js';
import { REF6M_DIR } from '../engine/helpers.js';

const SPECS = [
  'full', 'h2o(budget=0.5)+kvquant(bits=3)', 'window(sinks=4,recent=24)+fp16', 'full+int(bits=4)', 'snapkv(budget=20)+fp16',
  'full', 'h2o(budget=0.5)+kvquant(bits=3)', 'full+int(bits=4)',
];
const PROMPTS = [
  'The history of the city', 'In 1998 the band released', 'She said that the river', 'A large number of', 'The President of the United States',
  'It was the best of times', 'Call me Ishmael. Some years ago', 'The committee reported that',
];

/** ref-6m's own (f32) weights rounded to f16, as an HF directory: the f16 matmul paths on a trained model. */
async function writeRef6mF16(dir: string): Promise<void> {
  const ckpt = await loadCheckpoint(REF6M_DIR);
  const weights = new Map([...ckpt.tensors].map(([name, t]) => {
    if (t.dtype !== 'f32') throw new Error(`ref-6m's ${name} is ${t.dtype}, not f32`);
    return [name, { shape: t.shape, values: new Float32Array(new Uint8Array(t.data).buffer) }];
  }));
  await writeHfDir(dir, { config: ckpt.config, dtype: 'F16', seed: 0, weights }, path.join(REF6M_DIR, 'tokenizer.json'));
}

// The layer-group split (6 layers as 4+2 memories) carries every session's rows between memories. 8 rows
// take the matmul's few-token path (f32 and f16 weights); the sessions decoded alone take the matvec.
describe.each([
  { dtype: 'f32', layersPerMemory: undefined, groups: 1 },
  { dtype: 'f32', layersPerMemory: 4, groups: 2 },
  { dtype: 'f16', layersPerMemory: undefined, groups: 1 },
])('batched decoding ($dtype weights, layersPerMemory $layersPerMemory)', ({ dtype, layersPerMemory, groups }) => {
  let model: Model;
  let dir: string | undefined;
  beforeAll(async () => {
    let file = REF6M_DIR;
    if (dtype === 'f16') {
      dir = await mkdtemp(path.join(os.tmpdir(), 'kvpack-ref6m-f16-'));
      await writeRef6mF16(dir);
      file = dir;
    }
    model = await loadModel(file, { threads: 2, layersPerMemory });
  });
  afterAll(async () => {
    await model?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('gives each session the logits and greedy tokens it gets alone', () => {
    expect(model.weights.groups.count).toBe(groups);
    expect(model.weights.groups.list[0]!.layers[0]!.wq.dtype).toBe(dtype);
    const make = () => SPECS.map((cache) => model.session({ cache, chunkSize: 8 }));
    const alone = make();
    const batched = make();
    const vocab = model.config.vocabSize;
    let next = PROMPTS.map((p, i) => {
      const ids = model.tokenizer.encode(p, { addBos: true });
      batched[i]!.feed(ids);
      return argmax(alone[i]!.feed(ids));
    });
    const batch = model.batch({ rows: SPECS.length, chunkSize: 8 });
    for (let step = 0; step < 16; step++) {
      const together = batch.decode(batched, next);
      next = next.map((token, i) => {
        const own = alone[i]!.feed([token]);
        const row = together.subarray(i * vocab, (i + 1) * vocab);
        let worst = 0;
        for (let v = 0; v < vocab; v++) worst = Math.max(worst, Math.abs(row[v]! - own[v]!));
        // f32 rounding of another summation order (2.5e-5 seen; logits are ~10)
        expect(worst, `session ${i} (${SPECS[i]}), step ${step}`).toBeLessThan(5e-4);
        expect(argmax(row)).toBe(argmax(own));
        return argmax(own);
      });
    }
    for (let i = 0; i < SPECS.length; i++) {
      expect(batched[i]!.tokens).toEqual(alone[i]!.tokens);
      expect(batched[i]!.cache.layerLengths()).toEqual(alone[i]!.cache.layerLengths());
      expect(batched[i]!.cache.bytes()).toBe(alone[i]!.cache.bytes());
    }
    batch.free();
    for (const s of [...alone, ...batched]) s.dispose();
  });
});
