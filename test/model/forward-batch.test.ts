import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeHfDir } from '../../src/dev/write.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { argmax } from '../../src/engine/sample.js';
import type { Session } from '../../src/engine/session.js';
import { loadCheckpoint } from '../../src/model/load.js';
import { REF6M_DIR, withModel } from '../engine/helpers.js';

const SPECS = [
  'full', 'h2o(budget=0.5)+kvquant(bits=3)', 'window(sinks=4,recent=24)+fp16', 'full+int(bits=4)', 'snapkv(budget=20)+fp16',
  'full', 'h2o(budget=0.5)+kvquant(bits=3)', 'full+int(bits=4)',
];
const PROMPTS = [
  'The history of the city', 'In 1998 the band released', 'She said that the river', 'A large number of', 'The President of the United States',
  'It was the best of times', 'Call me Ishmael. Some years ago', 'The committee reported that',
];

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
    const [alone, batched] = decodeBothWays(model, SPECS, 16, (row, own, i, step) => {
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

  it('gives 2, 3 and 4 sessions (rows in registers) the logits they get alone, bit for bit', () => {
    for (const sessions of [2, 3, 4]) {
      const [alone, batched] = decodeBothWays(model, SPECS.slice(0, sessions), 8, (row, own, i, step) => {
        expect(row, `${sessions} sessions: session ${i} (${SPECS[i]}), step ${step}`).toEqual(own);
      });
      for (const s of [...alone, ...batched]) s.dispose();
    }
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
