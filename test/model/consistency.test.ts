// Corrupt headers that used to load and run on garbage (a fuzzing pass found them): each is now a typed error.
import { describe, expect, it } from 'vitest';
import { ModelFormatError } from '../../src/errors.js';
import { Model } from '../../src/engine/model.js';
import { ggufCheckpoint } from '../../src/model/gguf.js';
import { loadCheckpoint } from '../../src/model/load.js';
import {
  encode, GGML, GGUF_TYPE as T, ggufBytes, ggufName, hfConfigJson, hfName, randomWeights, safetensorsBytes, type GgufKv, type GgufTensor,
} from '../../src/dev/write.js';
import { ggufMetadata, tinyTokenizerJson, TINY, withTempDir } from './fixtures.js';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

const F = 'bad.gguf';
const tensors = (dtype: 'F32' | 'F16' | 'BF16' = 'F32'): GgufTensor[] =>
  [...randomWeights(TINY)].map(([name, t]) => ({ name: ggufName(name), shape: t.shape, type: GGML[dtype], data: encode(t.values, dtype) }));
const gguf = (metadata: GgufKv[] = ggufMetadata(TINY), ts = tensors()) => ggufBytes({ metadata, tensors: ts });
const checkpoint = (b: Buffer) => () => ggufCheckpoint(b, F);
const set = (key: string, type: number, value: unknown): GgufKv[] => ggufMetadata(TINY).map((kv): GgufKv => (kv[0] === key ? [key, type, value] : kv));

/** The byte offset of a tensor's type field in a GGUF written by ggufBytes. */
function typeField(b: Buffer, t: GgufTensor): number {
  return b.indexOf(t.name) + t.name.length + 4 + 8 * t.shape.length;
}

describe('headers that disagree with their data', () => {
  it('a GGUF tensor whose type was changed (sizes no longer match the offsets)', () => {
    const ts = tensors();
    for (const victim of [ts[3]!, ts[ts.length - 1]!]) {
      for (const type of [GGML.F16, GGML.BF16]) {
        const b = gguf(undefined, ts);
        b.writeUInt32LE(type, typeField(b, victim));
        expect(checkpoint(b)).toThrow(ModelFormatError);
        expect(checkpoint(b)).toThrow(/sizes and offsets disagree/);
      }
    }
    const q8 = ts.find((t) => t.shape[t.shape.length - 1]! % 32 === 0)!;
    const b = gguf(undefined, ts);
    b.writeUInt32LE(GGML.Q8_0, typeField(b, q8));
    expect(checkpoint(b)).toThrow(/sizes and offsets disagree/);
  });

  it('a layer count smaller than the layers present (GGUF block_count, HF num_hidden_layers)', () =>
    withTempDir(async (root) => {
      expect(checkpoint(gguf(set('llama.block_count', T.U32, TINY.numLayers - 1)))).toThrow(/config says 1 layers but the file holds layers 1/);
      const dir = path.join(root, 'hf');
      await mkdir(dir);
      await writeFile(path.join(dir, 'config.json'), JSON.stringify(hfConfigJson({ ...TINY, numLayers: 1 })));
      await writeFile(path.join(dir, 'tokenizer.json'), tinyTokenizerJson(TINY.vocabSize));
      await writeFile(path.join(dir, 'model.safetensors'), safetensorsBytes([...randomWeights(TINY)].map(([name, t]) => ({ name: hfName(name), dtype: 'F32', shape: t.shape, data: encode(t.values, 'F32') }))));
      await expect(loadCheckpoint(dir)).rejects.toThrow(/config says 1 layers but the file holds layers 1/);
    }));

  it('general.alignment must be a power of two ≥ 8', () => {
    for (const [type, value] of [[T.F32, 0.5], [T.U32, 1], [T.U32, 4], [T.U32, 0]] as const) {
      const b = gguf([...ggufMetadata(TINY), ['general.alignment', type, value]]);
      expect(checkpoint(b)).toThrow(/general.alignment must be a power of two ≥ 8/);
    }
  });

  it('a safetensors header length one byte short', () =>
    withTempDir(async (root) => {
      const good = safetensorsBytes([...randomWeights(TINY)].map(([name, t]) => ({ name: hfName(name), dtype: 'F32', shape: t.shape, data: encode(t.values, 'F32') })));
      const n = Number(good.readBigUInt64LE(0));
      // pad the JSON with spaces so that one byte less still parses: only the data offsets move
      const json = Buffer.from(`${good.toString('utf8', 8, 8 + n).trimEnd()}        `);
      const short = Buffer.concat([Buffer.alloc(8), json, good.subarray(8 + n)]);
      short.writeBigUInt64LE(BigInt(json.length - 1));
      const dir = path.join(root, 'hf');
      await mkdir(dir);
      await writeFile(path.join(dir, 'config.json'), JSON.stringify(hfConfigJson(TINY)));
      await writeFile(path.join(dir, 'tokenizer.json'), tinyTokenizerJson(TINY.vocabSize));
      await writeFile(path.join(dir, 'model.safetensors'), short);
      await expect(loadCheckpoint(dir)).rejects.toThrow(/sizes and offsets disagree/);
    }));

  it('absurd rms_norm_eps and rope_theta', () => {
    for (const v of [Infinity, 1e30, 1e-300, Number.NaN, 0]) {
      expect(checkpoint(gguf(set('llama.attention.layer_norm_rms_epsilon', T.F64, v)))).toThrow(/rms_norm_eps must be in/);
      expect(checkpoint(gguf(set('llama.rope.freq_base', T.F64, v)))).toThrow(/rope_theta must be in/);
    }
  });

  it('NaN or Inf weights are refused at load, naming the tensor and its layer', async () => {
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      for (const bad of [Number.NaN, Infinity]) {
        const ts = tensors(dtype).map((t) => {
          if (t.name !== 'blk.1.ffn_up.weight') return t;
          const values = new Float32Array(64 * 32).fill(0.01);
          values[77] = bad;
          return { ...t, data: encode(values, dtype) };
        });
        const ckpt = ggufCheckpoint(gguf(undefined, ts), F);
        await expect(Model.fromCheckpoint(ckpt, { backend: 'reference' })).rejects.toThrow(/blk\.1\.ffn_up\.weight \(layers\.1\.w_up\) holds a non-finite number .* at element 77/);
      }
    }
  });
});
