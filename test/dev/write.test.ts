import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { getLlama, LlamaLogLevel, type Token } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f16ToF32 } from '../../src/kernels/half.js';
import type { Checkpoint } from '../../src/model/checkpoint.js';
import type { ModelConfig } from '../../src/model/config.js';
import { parseGguf } from '../../src/model/gguf.js';
import { loadCheckpoint } from '../../src/model/load.js';
import { Model } from '../../src/engine/model.js';
import { parseSafetensors } from '../../src/model/safetensors.js';
import { TensorNames as N } from '../../src/model/tensor.js';
import { toF32 } from '../../src/model/weights.js';
import {
  encodeQ8_0, GGML, GGUF_TYPE as T, permuteRowsForGguf, randomLlama, writeGguf, writeHfDir, writeLlamaGguf, writeSafetensors, type FloatDType,
} from '../../src/dev/write.js';
import { greedyTokens, REF6M_DIR } from '../engine/helpers.js';

/** Tiny, but GQA and several heads, so a wrong Q/K permutation or head mapping changes the logits. */
const CONFIG: ModelConfig = {
  architecture: 'llama', hiddenSize: 64, intermediateSize: 96, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16,
  vocabSize: 8192, maxContext: 256, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: true, qkvBias: false,
};
const TOKENIZER = path.join(REF6M_DIR, 'tokenizer.json');
const IDS = [400, 1021, 77, 5000, 8191, 17, 3000, 42, 42, 999];

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'kvpack-write-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function writeBoth(dtype: FloatDType, untied = false): Promise<{ hf: Checkpoint; gguf: Checkpoint; ggufFile: string }> {
  const config = { ...CONFIG, tiedEmbeddings: !untied };
  const model = randomLlama(config, dtype, 7);
  const dir = path.join(tmp, `${dtype}${untied ? '-untied' : ''}`);
  const ggufFile = path.join(dir, 'model.gguf');
  await writeHfDir(dir, model, TOKENIZER, { bos: 0, eos: 0 });
  await writeLlamaGguf(ggufFile, model, { tokenizerJson: TOKENIZER, pre: 'smollm', bos: 0, eos: 0 });
  return { hf: await loadCheckpoint(dir), gguf: await loadCheckpoint(ggufFile), ggufFile };
}

/** GGUF Q/K rows put back into HF's rotate-half order. */
function unpermute(values: Float32Array, rows: number, heads: number): Float32Array {
  const cols = values.length / rows;
  const headDim = rows / heads;
  const out = new Float32Array(values.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < headDim / 2; i++) {
      const b = h * headDim;
      out.set(values.subarray((b + 2 * i) * cols, (b + 2 * i + 1) * cols), (b + i) * cols);
      out.set(values.subarray((b + 2 * i + 1) * cols, (b + 2 * i + 2) * cols), (b + headDim / 2 + i) * cols);
    }
  }
  return out;
}

function maxLogitDiff(a: Checkpoint, b: Checkpoint): Promise<number> {
  return (async () => {
    const [ma, mb] = await Promise.all([Model.fromCheckpoint(a, { backend: 'reference' }), Model.fromCheckpoint(b, { backend: 'reference' })]);
    try {
      const rows: Float32Array[][] = [[], []];
      [ma, mb].forEach((m, i) => m.session().score(IDS, { onLogits: (_, l) => rows[i]!.push(l.slice()) }));
      let diff = 0;
      for (let t = 0; t < rows[0]!.length; t++) {
        for (let v = 0; v < CONFIG.vocabSize; v++) diff = Math.max(diff, Math.abs(rows[0]![t]![v]! - rows[1]![t]![v]!));
      }
      return diff;
    } finally {
      await ma.close();
      await mb.close();
    }
  })();
}

describe('model writers', () => {
  it('safetensors round-trips names, shapes, bytes and metadata', async () => {
    const file = path.join(tmp, 'rt.safetensors');
    const a = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
    const b = new Uint8Array([1, 2, 3, 4, 5, 6]);
    await writeSafetensors(file, [
      { name: 'a', dtype: 'F32', shape: [2, 3], data: a },
      { name: 'b', dtype: 'BF16', shape: [3], data: b },
    ], { format: 'pt' });
    const buf = await fsp.readFile(file);
    expect(Number(buf.readBigUInt64LE(0)) % 8).toBe(0);
    const parsed = parseSafetensors(buf, file);
    expect(parsed.get('a')).toMatchObject({ dtype: 'F32', shape: [2, 3] });
    expect([...parsed.get('a')!.data]).toEqual([...a]);
    expect([...parsed.get('b')!.data]).toEqual([...b]);
    expect(JSON.parse(buf.toString('utf8', 8, 8 + Number(buf.readBigUInt64LE(0)))).__metadata__).toEqual({ format: 'pt' });
  });

  it('GGUF round-trips metadata of every type and aligns each tensor to 32 bytes', async () => {
    const file = path.join(tmp, 'rt.gguf');
    const q8 = encodeQ8_0(Float32Array.from({ length: 64 }, (_, i) => (i - 32) / 10));
    await writeGguf(file, {
      metadata: [
        ['u8', T.U8, 200], ['i16', T.I16, -3], ['u32', T.U32, 70000], ['f32', T.F32, 0.5], ['b', T.BOOL, true],
        ['s', T.STRING, 'héllo'], ['u64', T.U64, 2n ** 40n], ['f64', T.F64, 0.1], ['strs', T.ARRAY, [T.STRING, ['a', 'b c']]],
        ['ints', T.ARRAY, [T.I32, [1, -2, 3]]],
      ],
      tensors: [
        { name: 'odd', type: GGML.F32, shape: [3], data: new Uint8Array(12) },
        { name: 'q', type: GGML.Q8_0, shape: [2, 32], data: q8 },
        { name: 'h', type: GGML.F16, shape: [5], data: new Uint8Array(10) },
      ],
    });
    const g = parseGguf(await fsp.readFile(file), file);
    expect(g.version).toBe(3);
    expect(Object.fromEntries(g.metadata)).toEqual({
      // The reader gives u64 values that fit a double as numbers.
      u8: 200, i16: -3, u32: 70000, f32: 0.5, b: true, s: 'héllo', u64: 2 ** 40, f64: 0.1, strs: ['a', 'b c'], ints: [1, -2, 3],
    });
    expect(g.dataOffset % 32).toBe(0);
    expect(g.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([['odd', 'f32', [3]], ['q', 'q8_0', [2, 32]], ['h', 'f16', [5]]]);
    for (const t of g.tensors) expect(t.data.byteOffset % 32).toBe(0);
    expect([...g.tensors[1]!.data]).toEqual([...q8]);
    // Q8_0 decodes back to within half a quantization step.
    const view = new DataView(q8.buffer);
    for (let i = 0; i < 64; i++) {
      const block = (i >> 5) * 34;
      const back = f16ToF32(view.getUint16(block, true)) * view.getInt8(block + 2 + (i & 31));
      expect(Math.abs(back - (i - 32) / 10)).toBeLessThanOrEqual(3.2 / 127 / 2 + 2e-3);
    }
  });

  it('permuteRowsForGguf moves row i of each half-head to 2i and row half+i to 2i+1', () => {
    const rows = 8; // 2 heads of 4
    const data = Uint8Array.from({ length: rows * 2 }, (_, i) => i >> 1); // 2 bytes per row, value = row
    const out = permuteRowsForGguf(data, rows, 2);
    expect([...out].filter((_, i) => i % 2 === 0)).toEqual([0, 2, 1, 3, 4, 6, 5, 7]);
  });

  for (const dtype of ['F32', 'F16'] as const) {
    it(`${dtype}: the HF directory and the GGUF hold the same model (tensors and logits)`, async () => {
      const { hf, gguf } = await writeBoth(dtype);
      // GGUF stores eps as f32, and its Q/K rows in the interleaved RoPE layout.
      expect({ ...gguf.config, ropeLayout: 'half' }).toEqual({ ...hf.config, ropeLayout: 'half', rmsEps: Math.fround(hf.config.rmsEps) });
      expect(gguf.config.ropeLayout).toBe('interleaved');
      expect([...gguf.tensors.keys()].sort()).toEqual([...hf.tensors.keys()].sort());
      for (const [name, t] of hf.tensors) {
        const g = gguf.tensors.get(name)!;
        expect(g.shape).toEqual(t.shape);
        let gv = toF32(g, 'gguf');
        const l = Number(/^layers\.(\d+)\./.exec(name)?.[1] ?? -1);
        if (name === N.wq(l)) gv = unpermute(gv, t.shape[0]!, CONFIG.numHeads);
        if (name === N.wk(l)) gv = unpermute(gv, t.shape[0]!, CONFIG.numKvHeads);
        expect(gv).toEqual(toF32(t, 'hf'));
      }
      expect(gguf.tokenizer.encode('The President said that 1234 tokens')).toEqual(hf.tokenizer.encode('The President said that 1234 tokens'));
      expect(await maxLogitDiff(hf, gguf)).toBeLessThan(1e-4);
    });
  }

  it('an untied lm_head is written as output.weight', async () => {
    const { hf, gguf } = await writeBoth('F32', true);
    expect(hf.config.tiedEmbeddings).toBe(false);
    expect(gguf.config.tiedEmbeddings).toBe(false);
    expect(toF32(gguf.tensors.get(N.lmHead)!, 'gguf')).toEqual(toF32(hf.tensors.get(N.lmHead)!, 'hf'));
  });

  it('llama.cpp reads the written GGUF as the same model (greedy tokens match kvpack)', async () => {
    const { gguf, ggufFile } = await writeBoth('F32');
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    const expected: number[] = [];
    try {
      const lmodel = await llama.loadModel({ modelPath: ggufFile });
      const context = await lmodel.createContext({ contextSize: 256, threads: 1 });
      for await (const t of context.getSequence().evaluate(IDS as Token[], { temperature: 0, yieldEogToken: true })) {
        expected.push(Number(t));
        if (expected.length === 12) break;
      }
      await context.dispose();
      await lmodel.dispose();
    } finally {
      await llama.dispose();
    }
    const model = await Model.fromCheckpoint(gguf, { backend: 'reference' });
    try {
      expect(greedyTokens(model.session(), IDS, 12)).toEqual(expected);
    } finally {
      await model.close();
    }
  });
});
