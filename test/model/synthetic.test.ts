// Small random checkpoints written on the fly: every format, dtype and layout the loaders claim to read.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ModelConfig } from '../../src/model/config.js';
import { ModelFormatError } from '../../src/errors.js';
import { parseGguf, readGgufInParts } from '../../src/model/gguf.js';
import { loadCheckpoint } from '../../src/model/load.js';
import { parseSafetensors, readSafetensorsInParts } from '../../src/model/safetensors.js';
import { TensorNames as N } from '../../src/model/tensor.js';
import {
  encodeBF16, encodeF16, encodeF32, GGML, GGUF_TYPE as T, ggufBytes, ggufName, hfConfigJson, hfName, encodeQ8_0, randomWeights, safetensorsBytes, type SafetensorsTensor, type Weights,
} from '../../src/dev/write.js';
import {
  ggufMetadata, llama2cBytes, llama2cTokenizerBytes, REF6M, tinyTokenizerJson, tinyVocab, TINY, withTempDir,
} from './fixtures.js';

const bytesOf = (t: { data: Uint8Array }) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

function stEntries(w: Weights, dtypeOf: (name: string) => 'F32' | 'F16' | 'BF16' = () => 'F32'): SafetensorsTensor[] {
  const enc = { F32: encodeF32, F16: encodeF16, BF16: encodeBF16 };
  return [...w].map(([name, t]) => ({ name: hfName(name), dtype: dtypeOf(name), shape: t.shape, data: enc[dtypeOf(name)](t.values) }));
}

async function writeHfDir(dir: string, c: ModelConfig, files: Record<string, Buffer | string>, extra: Record<string, unknown> = {}) {
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(hfConfigJson(c, extra)));
  await writeFile(path.join(dir, 'tokenizer.json'), tinyTokenizerJson(c.vocabSize));
  for (const [name, data] of Object.entries(files)) await writeFile(path.join(dir, name), data);
}

describe('Hugging Face directories', () => {
  it('loads a single F32 safetensors file with its values intact', () =>
    withTempDir(async (dir) => {
      const w = randomWeights(TINY, 1);
      await writeHfDir(dir, TINY, { 'model.safetensors': safetensorsBytes(stEntries(w), { format: 'pt' }) });
      const ck = await loadCheckpoint(dir);
      expect(ck.config).toEqual({ ...TINY, ropeLayout: 'half' });
      expect(ck.tensors.size).toBe(w.size);
      for (const [name, t] of w) {
        const got = ck.tensors.get(name)!;
        expect(got.shape).toEqual(t.shape);
        expect(got.name).toBe(hfName(name));
        expect(bytesOf(got).equals(encodeF32(t.values))).toBe(true);
      }
      expect(ck.tokenizer.bos).toBe(1);
      expect(ck.tokenizer.eos).toEqual([2]);
      expect(ck.tokenizer.encode('abc')).toEqual([3, 4, 5]);
    }));

  it('loads sharded F16/BF16 weights through model.safetensors.index.json, tied embeddings', () =>
    withTempDir(async (dir) => {
      const c = { ...TINY, tiedEmbeddings: true };
      const w = randomWeights(c, 2);
      const entries = stEntries(w, (n) => (n.includes('w_') ? 'BF16' : 'F16'));
      const shard1 = entries.filter((e) => !e.name.includes('layers.1.'));
      const shard2 = entries.filter((e) => e.name.includes('layers.1.'));
      const names = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
      const weightMap = Object.fromEntries([...shard1.map((e) => [e.name, names[0]]), ...shard2.map((e) => [e.name, names[1]])]);
      await writeHfDir(dir, c, {
        [names[0]!]: safetensorsBytes(shard1),
        [names[1]!]: safetensorsBytes(shard2),
        'model.safetensors.index.json': JSON.stringify({ metadata: {}, weight_map: weightMap }),
      });
      const ck = await loadCheckpoint(dir);
      expect(ck.config.tiedEmbeddings).toBe(true);
      expect(ck.tensors.has(N.lmHead)).toBe(false);
      expect(ck.tensors.get(N.wUp(1))!.dtype).toBe('bf16');
      expect(ck.tensors.get(N.wq(1))!.dtype).toBe('f16');
      expect(bytesOf(ck.tensors.get(N.wUp(1))!).equals(encodeBF16(w.get(N.wUp(1))!.values))).toBe(true);
      expect(bytesOf(ck.tensors.get(N.embed)!).equals(encodeF16(w.get(N.embed)!.values))).toBe(true);
      // Tensors of one shard share that shard's buffer; the two shards do not.
      expect(ck.tensors.get(N.wq(1))!.data.buffer).toBe(ck.tensors.get(N.wk(1))!.data.buffer);
      expect(ck.tensors.get(N.wq(1))!.data.buffer).not.toBe(ck.tensors.get(N.wq(0))!.data.buffer);
    }));

  it('reads a qwen2 config with q/k/v biases and skips tensors it does not use', () =>
    withTempDir(async (dir) => {
      const c: ModelConfig = { ...TINY, architecture: 'qwen2', qkvBias: true, headDim: 16, numHeads: 2, numKvHeads: 1 };
      const w = randomWeights(c, 3);
      const entries = stEntries(w);
      // An I64 buffer kvpack never reads must not stop the load.
      entries.push({ name: 'model.layers.0.self_attn.rotary_emb.inv_freq', dtype: 'I64', shape: [2], data: new Uint8Array(16) });
      await writeHfDir(dir, c, { 'model.safetensors': safetensorsBytes(entries) }, { head_dim: 16, eos_token_id: [2, 0] });
      const ck = await loadCheckpoint(path.join(dir, 'config.json'));
      expect(ck.config).toMatchObject({ architecture: 'qwen2', qkvBias: true, headDim: 16, ropeLayout: 'half' });
      expect(ck.tensors.get(N.bk(1))!.shape).toEqual([16]);
      expect(ck.tokenizer.eos).toEqual([2, 0]);
    }));

  it('takes an explicit tokenizer path and mistral architecture', () =>
    withTempDir(async (dir) => {
      const c: ModelConfig = { ...TINY, architecture: 'mistral' };
      await writeHfDir(dir, c, { 'model.safetensors': safetensorsBytes(stEntries(randomWeights(c))) });
      const tok = path.join(dir, 'other.json');
      await writeFile(tok, tinyTokenizerJson(40));
      const ck = await loadCheckpoint(dir, { tokenizer: tok });
      expect(ck.config.architecture).toBe('mistral');
      expect(ck.tokenizer.vocabSize).toBe(40);
    }));
});

function ggufTensors(w: Weights, typeOf: (name: string) => number = () => GGML.F32) {
  const enc: Record<number, (v: Float32Array) => Uint8Array> = { [GGML.F32]: encodeF32, [GGML.F16]: encodeF16, [GGML.BF16]: encodeBF16, [GGML.Q8_0]: encodeQ8_0 };
  return [...w].map(([name, t]) => ({ name: ggufName(name), shape: t.shape, type: typeOf(name), data: enc[typeOf(name)]!(t.values) }));
}

describe('GGUF files', () => {
  it('loads F32, F16, BF16 and Q8_0 tensors with SentencePiece metadata (v3, and v2, alignment 64)', async () => {
    const w = randomWeights(TINY, 4);
    const typeOf = (n: string) => (n === N.wq(0) ? GGML.Q8_0 : n === N.wk(0) ? GGML.F16 : n === N.wv(0) ? GGML.BF16 : GGML.F32);
    for (const [version, alignment] of [[3, 32], [2, 64]] as const) {
      await withTempDir(async (dir) => {
        const file = path.join(dir, 'tiny.gguf');
        const metadata = ggufMetadata(TINY, alignment === 32 ? [] : [['general.alignment', T.U32, alignment]]);
        await writeFile(file, ggufBytes({ version, metadata, tensors: ggufTensors(w, typeOf), alignment }));
        const ck = await loadCheckpoint(file);
        expect(ck.config).toEqual({ ...TINY, ropeLayout: 'interleaved' });
        expect(ck.tensors.get(N.wq(0))!).toMatchObject({ dtype: 'q8_0', shape: [32, 32], name: 'blk.0.attn_q.weight' });
        expect(bytesOf(ck.tensors.get(N.wq(0))!).equals(encodeQ8_0(w.get(N.wq(0))!.values))).toBe(true);
        expect(bytesOf(ck.tensors.get(N.wk(0))!).equals(encodeF16(w.get(N.wk(0))!.values))).toBe(true);
        expect(bytesOf(ck.tensors.get(N.wv(0))!).equals(encodeBF16(w.get(N.wv(0))!.values))).toBe(true);
        expect(bytesOf(ck.tensors.get(N.wDown(1))!).equals(encodeF32(w.get(N.wDown(1))!.values))).toBe(true);
        expect(ck.tokenizer).toMatchObject({ vocabSize: 64, bos: 1, eos: [2], addBosByDefault: true });
      });
    }
  });

  it('loads a qwen2 GGUF with biases, tied output and a GPT-2 BPE tokenizer, found by magic without the extension', () =>
    withTempDir(async (dir) => {
      const c: ModelConfig = { ...TINY, architecture: 'qwen2', qkvBias: true, tiedEmbeddings: true };
      const file = path.join(dir, 'qwen-model');
      await writeFile(file, ggufBytes({ metadata: ggufMetadata(c), tensors: ggufTensors(randomWeights(c, 5)) }));
      const ck = await loadCheckpoint(file);
      expect(ck.format).toBe('gguf');
      expect(ck.config).toEqual({ ...c, ropeLayout: 'half' });
      expect(ck.tensors.get(N.bq(0))!.shape).toEqual([32]);
      expect(ck.tokenizer).toMatchObject({ vocabSize: 64, addBosByDefault: false });
    }));

  it('parses every metadata value type, nested arrays included', () => {
    const metadata: [string, number, unknown][] = [
      ['u8', T.U8, 200], ['i8', T.I8, -5], ['u16', T.U16, 60000], ['i16', T.I16, -300], ['u32', T.U32, 4e9], ['i32', T.I32, -2e9],
      ['f32', T.F32, 0.5], ['bool', T.BOOL, true], ['str', T.STRING, 'héllo'], ['u64', T.U64, 2n ** 60n], ['i64', T.I64, -7],
      ['f64', T.F64, Math.PI], ['nested', T.ARRAY, [T.ARRAY, [[T.I32, [1, 2]], [T.STRING, ['x']], [T.U8, []]]]],
    ];
    const g = parseGguf(ggufBytes({ metadata, tensors: [] }), 'mem.gguf');
    expect(Object.fromEntries(g.metadata)).toEqual({
      u8: 200, i8: -5, u16: 60000, i16: -300, u32: 4e9, i32: -2e9, f32: 0.5, bool: true, str: 'héllo', u64: 2n ** 60n, i64: -7,
      f64: Math.PI, nested: [[1, 2], ['x'], []],
    });
    expect(g.version).toBe(3);
    expect(g.tensors).toEqual([]);
  });
});

describe('llama2.c checkpoints', () => {
  it('loads shared and separate classifiers, finding tokenizer.bin, tok{vocab}.bin or an explicit tokenizer', () =>
    withTempDir(async (dir) => {
      const tokBytes = llama2cTokenizerBytes(tinyVocab(TINY.vocabSize));
      for (const shared of [true, false]) {
        const c = { ...TINY, tiedEmbeddings: shared };
        const w = randomWeights(c, 6);
        const sub = path.join(dir, String(shared));
        await mkdir(sub);
        const file = path.join(sub, 'model.bin');
        await writeFile(file, llama2cBytes(c, w, shared));
        await writeFile(path.join(sub, shared ? 'tokenizer.bin' : `tok${TINY.vocabSize}.bin`), tokBytes);
        const ck = await loadCheckpoint(file);
        expect(ck.format).toBe('llama2c');
        expect(ck.config).toEqual({ ...c, ropeLayout: 'interleaved', rmsEps: 1e-5 }); // llama2.c fixes eps
        expect(ck.tensors.size).toBe(w.size);
        for (const [name, t] of w) expect(bytesOf(ck.tensors.get(name)!).equals(encodeF32(t.values)), name).toBe(true);
        expect(ck.tokenizer.vocabSize).toBe(TINY.vocabSize);
      }
      const lone = path.join(dir, 'lone.bin');
      await writeFile(lone, llama2cBytes(TINY, randomWeights(TINY), false));
      const explicit = path.join(dir, 'true', 'tokenizer.bin');
      expect((await loadCheckpoint(lone, { tokenizer: explicit })).tokenizer.vocabSize).toBe(TINY.vocabSize);
    }));
});

describe('files read in parts (the path for files over 2 GiB)', () => {
  it('gives the same tensors and metadata as reading ref-6m whole', async () => {
    const stFile = path.join(REF6M, 'model.safetensors');
    const whole = parseSafetensors(await readFile(stFile), stFile);
    const parts = await readSafetensorsInParts(stFile);
    expect([...parts.keys()]).toEqual([...whole.keys()]);
    for (const [name, e] of whole) {
      const p = parts.get(name)!;
      expect(p.shape).toEqual(e.shape);
      expect(bytesOf(p).equals(e.data), name).toBe(true);
    }
    const ggufFile = path.join(REF6M, 'ref-6m.gguf');
    const g = parseGguf(await readFile(ggufFile), ggufFile);
    // A 4 KB first read makes the reader grow its prefix several times to fit the 270 KB header.
    const gp = await readGgufInParts(ggufFile, 4096);
    expect(gp.metadata).toEqual(g.metadata);
    expect(gp.dataOffset).toBe(g.dataOffset);
    expect(gp.tensors.map((t) => t.name)).toEqual(g.tensors.map((t) => t.name));
    gp.tensors.forEach((t, i) => expect(bytesOf(t).equals(g.tensors[i]!.data), t.name).toBe(true));
  });

  it('reports truncation the same way', () =>
    withTempDir(async (dir) => {
      const st = safetensorsBytes([{ name: 'x', dtype: 'F32', shape: [4], data: new Uint8Array(16) }]);
      const stFile = path.join(dir, 'cut.safetensors');
      await writeFile(stFile, st.subarray(0, st.length - 1));
      await expect(readSafetensorsInParts(stFile)).rejects.toThrow(/cut\.safetensors: tensor x: data_offsets \[0, 16\] run past the end/);
      await writeFile(stFile, st.subarray(0, 12));
      await expect(readSafetensorsInParts(stFile)).rejects.toThrow(/cut\.safetensors: header length \d+ runs past the end/);
      const g = ggufBytes({ metadata: ggufMetadata(TINY), tensors: [{ name: 'x', shape: [32], type: GGML.F32, data: new Uint8Array(128) }] });
      const gFile = path.join(dir, 'cut.gguf');
      await writeFile(gFile, g.subarray(0, g.length - 1));
      await expect(readGgufInParts(gFile, 64)).rejects.toThrow(/cut\.gguf: tensor x data \[0, 128\) runs past the end/);
      await writeFile(gFile, g.subarray(0, 300));
      await expect(readGgufInParts(gFile, 64)).rejects.toThrow(ModelFormatError);
    }));
});
