import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { GGUF_TYPE, ggufModelMetadata, llamaGgufTensorInfos, writeGgufTensors } from '../../src/dev/write.js';
import { MemoryPlanError } from '../../src/errors.js';
import { loadModel, readModelInfo } from '../../src/engine/model.js';
import type { ModelConfig } from '../../src/model/config.js';
import { loadCheckpoint, readModelHeader } from '../../src/model/load.js';

// counts checkpoint loads (reading the weights), in place of timing the refusal
vi.mock('../../src/model/load.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/model/load.js')>();
  return { ...actual, loadCheckpoint: vi.fn(actual.loadCheckpoint) };
});
import { checkPlan, MEMORY_LIMIT_BYTES, planMemory } from '../../src/model/plan.js';
import { REF6M, withTempDir } from './fixtures.js';

/** Llama-2-7B's shape with a vocabulary so wide that its f16 embedding alone declares 128 GiB. */
const HUGE: ModelConfig = {
  architecture: 'llama', hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128,
  vocabSize: 2 ** 24, maxContext: 4096, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'interleaved', tiedEmbeddings: true, qkvBias: false,
};

describe('memory plan', () => {
  it('refuses a sparse GGUF whose header declares more than the machine has, before reading weights', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'huge.gguf');
      const metadata = [...ggufModelMetadata(HUGE, 'huge'), ['llama.vocab_size', GGUF_TYPE.U32, HUGE.vocabSize] as const];
      await writeGgufTensors(file, { metadata: metadata as never }, llamaGgufTensorInfos(HUGE, 'F16'));
      vi.mocked(loadCheckpoint).mockClear();
      const error = await loadModel(file, { threads: 1 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MemoryPlanError);
      const e = error as MemoryPlanError;
      // both numbers and the longest context that fits (none: the weights alone do not)
      expect(e.message).toMatch(/^.*huge\.gguf: needs 1\d\d\.\d GiB for 1024 tokens of "full" \(weights 1\d\d\.\d GiB, KV .*\) but /);
      expect(e.message).toContain('no context fits: the weights alone are too large');
      expect(e.neededBytes).toBeGreaterThan(2 ** 37);
      expect(e.availableBytes).toBeLessThan(e.neededBytes);
      expect(e.longestContext).toBe(0);
      expect(loadCheckpoint).not.toHaveBeenCalled(); // refused from the header: no weight was read
    });
  });

  it('describes a model from its header alone: a sparse GGUF declaring 128 GiB of weights', async () => {
    await withTempDir(async (dir) => {
      const file = path.join(dir, 'huge.gguf');
      const metadata = [...ggufModelMetadata(HUGE, 'huge'), ['llama.vocab_size', GGUF_TYPE.U32, HUGE.vocabSize] as const];
      await writeGgufTensors(file, { metadata: metadata as never }, llamaGgufTensorInfos(HUGE, 'F16'));
      // loading refuses it (above); describing it reads no weight, so it answers
      const info = await readModelInfo(file);
      const c = HUGE;
      const layerMatrices = c.hiddenSize * c.hiddenSize * 2 + 2 * c.hiddenSize * c.numKvHeads * c.headDim + 3 * c.hiddenSize * c.intermediateSize;
      const matrices = c.vocabSize * c.hiddenSize + c.numLayers * layerMatrices;
      const vectors = c.hiddenSize + c.numLayers * 2 * c.hiddenSize;
      expect(info.parameters).toBe(matrices + vectors);
      expect(info.dtypes).toEqual({ f16: matrices, f32: vectors });
      expect(info.tensorTypes).toEqual({ f16: 1 + 7 * c.numLayers, f32: 1 + 2 * c.numLayers });
      expect(info.weightBytes).toBe(2 * matrices + 4 * vectors);
      expect(info.config.vocabSize).toBe(c.vocabSize);
    });
  });

  it('describes ref-6m from its header as the loaded model does', async () => {
    const model = await loadModel(REF6M, { threads: 1 });
    try {
      expect(await readModelInfo(REF6M)).toEqual(model.info());
    } finally {
      await model.close();
    }
  });

  it('splits a model larger than one WebAssembly memory over several, and refuses an fp16 cache of a million tokens up front', () => {
    const llama7b: ModelConfig = { ...HUGE, vocabSize: 32000, tiedEmbeddings: false };
    const params = 2 * 32000 * 4096 + 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008);
    const available = { bytes: 20 * 2 ** 30, source: 'test' };
    const plan = planMemory({ source: '7b', config: llama7b, weightBytes: 2 * params }, { context: 2048, threads: 2, available });
    expect(plan.fits).toBe(true);
    expect(plan.weightBytes).toBeGreaterThan(MEMORY_LIMIT_BYTES * 3);
    expect(plan.memories).toBe(Math.ceil(32 / plan.layersPerMemory));
    expect(plan.memories).toBeGreaterThanOrEqual(4);
    // every memory holds its layers' weights and cache within 4 GiB; the first also the embedding and classifier
    const layer = (2 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + plan.kvBytes / 32);
    expect(2 * 2 * 32000 * 4096 + plan.layersPerMemory * layer).toBeLessThan(MEMORY_LIMIT_BYTES);
    expect(2 * 2 * 32000 * 4096 + (plan.layersPerMemory + 1) * layer + plan.scratchBytes / plan.memories).toBeGreaterThan(MEMORY_LIMIT_BYTES);

    const smol: ModelConfig = { ...HUGE, hiddenSize: 576, intermediateSize: 1536, numLayers: 30, numHeads: 9, numKvHeads: 3, headDim: 64, vocabSize: 49152, maxContext: 8192 };
    const header = { source: 'smollm2', config: smol, weightBytes: 270e6 };
    const million = 2 ** 20;
    const fp16 = planMemory(header, { context: million, cache: 'full+fp16', threads: 2, available });
    expect(fp16.kvBytes).toBeGreaterThan(22 * 2 ** 30); // 23040 bytes of keys and values per token
    expect(fp16.fits).toBe(false);
    expect(() => checkPlan(fp16)).toThrow(/needs 2\d\.\d GiB for 1048576 tokens of "full" .* but 20\.0 GiB are available \(test\); the longest context that fits is \d+ tokens/);
    for (const cache of ['kvquant(bits=2)', 'int(bits=2)']) {
      const plan2 = planMemory(header, { context: million, cache, threads: 2, available });
      expect(plan2.fits, cache).toBe(true);
      expect(plan2.kvBytes).toBeLessThan(fp16.kvBytes / 5);
    }
  });

  it("starts a session's cache at the context the model was planned for", async () => {
    for (const context of [64, 300]) {
      const model = await loadModel(REF6M, { threads: 1, context });
      try {
        const session = model.session({ cache: 'full+fp16' });
        expect(session.cache.capacity).toBe(context);
        expect(model.session({ cache: 'full+fp16', context: 32 }).cache.capacity).toBe(32);
      } finally {
        await model.close();
      }
    }
  });

  it('counts the weights, KV at the context from the codec allocation, and finds the longest context that fits', async () => {
    const header = await readModelHeader(REF6M);
    const c = header.config;
    const available = { bytes: 64 * 2 ** 20, source: 'test' };
    const f32 = planMemory(header, { context: 4096, cache: 'full+fp32', threads: 1, available });
    const f16 = planMemory(header, { context: 4096, cache: 'full', threads: 1, available }); // fp16, the default
    const int2 = planMemory(header, { context: 4096, cache: 'int(bits=2)', threads: 1, available });
    // f32 keys and values, plus the two f32 per-head attention buffers the cache keeps per slot
    const perSlotBuffers = 2 * c.numHeads * 4;
    expect(f32.kvBytesPerToken).toBe(2 * c.numLayers * c.numKvHeads * c.headDim * 4 + perSlotBuffers);
    expect(f16.kvBytesPerToken).toBe(2 * c.numLayers * c.numKvHeads * c.headDim * 2 + perSlotBuffers);
    expect(int2.kvBytesPerToken).toBeLessThan(f16.kvBytesPerToken / 4);
    expect(f32.weightBytes).toBeGreaterThan(6e6 * 4);
    // the longest context fits, one more token does not
    const longest = planMemory(header, { context: f32.longestContext, cache: 'full+fp32', threads: 1, available });
    expect(longest.fits).toBe(true);
    expect(planMemory(header, { context: f32.longestContext + 1, cache: 'full+fp32', threads: 1, available }).fits).toBe(false);
    expect(int2.longestContext).toBeGreaterThan(4 * f16.longestContext);
    expect(() => checkPlan(f32)).not.toThrow();
    const tooLong = planMemory(header, { context: 10 ** 6, cache: 'full+fp32', threads: 1, available });
    expect(() => checkPlan(tooLong)).toThrow(`64.0 MiB are available (test); the longest context that fits is ${f32.longestContext} tokens`);
  });
});
