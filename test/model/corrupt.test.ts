// Broken and unsupported files: each must fail with a typed error that names the file and the problem.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelFormatError, UnsupportedModelError } from '../../src/errors.js';
import type { ModelConfig } from '../../src/model/config.js';
import { ggufCheckpoint, parseGguf } from '../../src/model/gguf.js';
import { loadCheckpoint } from '../../src/model/load.js';
import { TensorNames as N } from '../../src/model/tensor.js';
import {
  encodeF32, GGML, GGUF_TYPE as T, ggufBytes, ggufName, hfConfigJson, hfName, randomWeights, safetensorsBytes, type GgufKv, type GgufTensor, type SafetensorsTensor,
} from '../../src/dev/write.js';
import {
  ggufMetadata, llama2cBytes, llama2cTokenizerBytes, tinyTokenizerJson, tinyVocab, TINY, withTempDir,
} from './fixtures.js';

type ErrorClass = typeof ModelFormatError | typeof UnsupportedModelError;

async function expectFailure(p: Promise<unknown>, cls: ErrorClass, file: string, phrase: string | RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${cls.name} mentioning ${String(phrase)}`).toBeInstanceOf(cls);
  const msg = (err as Error).message;
  expect(msg).toContain(file);
  if (typeof phrase === 'string') expect(msg).toContain(phrase);
  else expect(msg).toMatch(phrase);
}

const entries = (c: ModelConfig = TINY): SafetensorsTensor[] =>
  [...randomWeights(c)].map(([name, t]) => ({ name: hfName(name), dtype: 'F32', shape: t.shape, data: encodeF32(t.values) }));

/** Writes an HF dir with these parts (defaults: tiny config, weights, tokenizer) and returns its path. */
async function hfDir(root: string, parts: { config?: unknown; weights?: Buffer; tokenizer?: string | null } = {}): Promise<string> {
  const dir = path.join(root, `m${Math.random().toString(36).slice(2, 8)}`);
  await mkdir(dir);
  await writeFile(path.join(dir, 'config.json'), typeof parts.config === 'string' ? parts.config : JSON.stringify(parts.config ?? hfConfigJson(TINY)));
  await writeFile(path.join(dir, 'model.safetensors'), parts.weights ?? safetensorsBytes(entries()));
  if (parts.tokenizer !== null) await writeFile(path.join(dir, 'tokenizer.json'), parts.tokenizer ?? tinyTokenizerJson(TINY.vocabSize));
  return dir;
}

describe('safetensors / HF corruption', () => {
  const ST = 'model.safetensors';

  it('rejects truncated files, bad header lengths and non-JSON headers', () =>
    withTempDir(async (root) => {
      const good = safetensorsBytes(entries());
      await expectFailure(loadCheckpoint(await hfDir(root, { weights: good.subarray(0, good.length - 100) })), ModelFormatError, ST, 'run past the end');
      await expectFailure(loadCheckpoint(await hfDir(root, { weights: good.subarray(0, 5) })), ModelFormatError, ST, 'too short');
      const longHeader = Buffer.from(good);
      longHeader.writeBigUInt64LE(BigInt(good.length));
      await expectFailure(loadCheckpoint(await hfDir(root, { weights: longHeader })), ModelFormatError, ST, 'header length');
      const notJson = Buffer.from(good);
      notJson.write('{!!', 8);
      await expectFailure(loadCheckpoint(await hfDir(root, { weights: notJson })), ModelFormatError, ST, 'not valid JSON');
      const arrayHeader = Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('[]')]);
      await expectFailure(loadCheckpoint(await hfDir(root, { weights: arrayHeader })), ModelFormatError, ST, 'not a JSON object');
    }));

  it('rejects bad entries: unknown dtype, overlapping or mis-sized ranges, bad shapes', () =>
    withTempDir(async (root) => {
      const e = entries();
      const withDtype = e.map((x) => (x.name === hfName(N.wq(1)) ? { ...x, dtype: 'I32' } : x));
      await expectFailure(loadCheckpoint(await hfDir(root, { weights: safetensorsBytes(withDtype) })), UnsupportedModelError, ST, `${hfName(N.wq(1))} has dtype I32`);
      const weird = e.map((x) => (x.name === hfName(N.wq(1)) ? { ...x, dtype: 'Q9' } : x));
      await expectFailure(loadCheckpoint(await hfDir(root, { weights: safetensorsBytes(weird) })), UnsupportedModelError, ST, 'dtype Q9');

      // Rewrite the header by hand for the range errors.
      const patch = (edit: (h: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void) => {
        const good = safetensorsBytes(e);
        const n = Number(good.readBigUInt64LE(0));
        const h = JSON.parse(good.toString('utf8', 8, 8 + n));
        edit(h);
        const json = Buffer.from(JSON.stringify(h));
        const len = Buffer.alloc(8);
        len.writeBigUInt64LE(BigInt(json.length));
        return Buffer.concat([len, json, good.subarray(8 + n)]);
      };
      const embed = hfName(N.embed);
      const wk = hfName(N.wk(0));
      await expectFailure(
        loadCheckpoint(await hfDir(root, { weights: patch((h) => { h[wk]!.data_offsets = h[embed]!.data_offsets.slice(); h[wk]!.shape = h[embed]!.shape; }) })),
        ModelFormatError, ST, 'overlap',
      );
      await expectFailure(
        loadCheckpoint(await hfDir(root, { weights: patch((h) => { h[wk]!.shape = [3, 3]; }) })),
        ModelFormatError, ST, `tensor ${wk}: data_offsets`,
      );
      await expectFailure(
        loadCheckpoint(await hfDir(root, { weights: patch((h) => { h[wk]!.data_offsets = [10, 2]; }) })),
        ModelFormatError, ST, 'run past the end',
      );
      await expectFailure(
        loadCheckpoint(await hfDir(root, { weights: patch((h) => { h[wk]!.shape = [-1, 32]; }) })),
        ModelFormatError, ST, 'shape must be an array of non-negative integers',
      );
      await expectFailure(
        loadCheckpoint(await hfDir(root, { weights: patch((h) => { (h as Record<string, unknown>)[wk] = 'x'; }) })),
        ModelFormatError, ST, 'not an object',
      );
    }));

  it('reports missing tensors and shapes that disagree with config.json', () =>
    withTempDir(async (root) => {
      const e = entries();
      await expectFailure(
        loadCheckpoint(await hfDir(root, { weights: safetensorsBytes(e.filter((x) => x.name !== hfName(N.wUp(1)))) })),
        ModelFormatError, path.basename(root), `missing tensor ${N.wUp(1)}`,
      );
      await expectFailure(
        loadCheckpoint(await hfDir(root, { config: hfConfigJson({ ...TINY, intermediateSize: 48 }) })),
        ModelFormatError, path.basename(root), `${hfName(N.wGate(0))} has shape [64, 32] but the config implies [48, 32]`,
      );
      // An absurd layer count fails fast instead of enumerating billions of expected tensors.
      await expectFailure(
        loadCheckpoint(await hfDir(root, { config: hfConfigJson({ ...TINY, numLayers: 2 ** 30 }) })),
        ModelFormatError, path.basename(root), 'layers but the file holds only',
      );
    }));

  it('rejects unsupported architectures and config features, naming what is supported', () =>
    withTempDir(async (root) => {
      const gpt2 = { ...hfConfigJson(TINY), architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' };
      await expectFailure(loadCheckpoint(await hfDir(root, { config: gpt2 })), UnsupportedModelError, 'config.json', 'LlamaForCausalLM');
      await expectFailure(
        loadCheckpoint(await hfDir(root, { config: hfConfigJson(TINY, { rope_scaling: { rope_type: 'dynamic', factor: 8 } }) })),
        UnsupportedModelError, 'config.json', 'rope_scaling', 'dynamic',
      );
      await expectFailure(
        loadCheckpoint(await hfDir(root, { config: hfConfigJson(TINY, { rope_scaling: { rope_type: 'llama3', factor: 8 } }) })),
        ModelFormatError, 'config.json', 'rope_scaling.low_freq_factor is missing',
      );
      await expectFailure(loadCheckpoint(await hfDir(root, { config: '{"model_type": ' })), ModelFormatError, 'config.json', 'not valid JSON');
      await expectFailure(
        loadCheckpoint(await hfDir(root, { config: hfConfigJson(TINY, { hidden_size: '32' }) })),
        ModelFormatError, 'config.json', 'hidden_size must be a number',
      );
      await expectFailure(
        loadCheckpoint(await hfDir(root, { config: hfConfigJson(TINY, { num_attention_heads: 3 }) })),
        ModelFormatError, 'config.json', 'positive integer',
      );
    }));

  it('reports missing or broken config, tokenizer and shard files', () =>
    withTempDir(async (root) => {
      const noTok = await hfDir(root, { tokenizer: null });
      await expectFailure(loadCheckpoint(noTok), ModelFormatError, 'tokenizer.json', 'file not found');
      await expectFailure(loadCheckpoint(await hfDir(root, { tokenizer: 'nope' })), ModelFormatError, 'tokenizer.json', 'not valid JSON');
      await expectFailure(loadCheckpoint(await hfDir(root, { tokenizer: tinyTokenizerJson(100) })), ModelFormatError, 'tokenizer.json', "model's vocabulary is 64");

      const sharded = path.join(root, 'sharded');
      await mkdir(sharded);
      await writeFile(path.join(sharded, 'config.json'), JSON.stringify(hfConfigJson(TINY)));
      const index = path.join(sharded, 'model.safetensors.index.json');
      await writeFile(index, JSON.stringify({ weight_map: { [hfName(N.embed)]: 'model-00001-of-00002.safetensors' } }));
      await expectFailure(loadCheckpoint(sharded), ModelFormatError, 'model-00001-of-00002.safetensors', 'file not found');
      await writeFile(index, JSON.stringify({ weight_map: { [hfName(N.embed)]: '../escape.safetensors' } }));
      await expectFailure(loadCheckpoint(sharded), ModelFormatError, 'model.safetensors.index.json', 'not a file name in this directory');
      await writeFile(path.join(sharded, 'model-00001-of-00002.safetensors'), safetensorsBytes(entries().slice(1)));
      await writeFile(index, JSON.stringify({ weight_map: { [hfName(N.embed)]: 'model-00001-of-00002.safetensors' } }));
      await expectFailure(loadCheckpoint(sharded), ModelFormatError, 'model.safetensors.index.json', 'that shard does not hold it');

      const empty = path.join(root, 'empty');
      await mkdir(empty);
      await expectFailure(loadCheckpoint(empty), ModelFormatError, 'config.json', 'file not found');
      await writeFile(path.join(empty, 'config.json'), JSON.stringify(hfConfigJson(TINY)));
      await expectFailure(loadCheckpoint(empty), ModelFormatError, 'empty', 'no model.safetensors');
    }));
});

describe('GGUF corruption', () => {
  const tensors = (c: ModelConfig = TINY): GgufTensor[] =>
    [...randomWeights(c)].map(([name, t]) => ({ name: ggufName(name), shape: t.shape, type: GGML.F32, data: encodeF32(t.values) }));
  const good = (metadata: GgufKv[] = ggufMetadata(TINY), ts = tensors()) => ggufBytes({ metadata, tensors: ts });
  const F = 'bad.gguf';
  const parse = (b: Buffer) => Promise.resolve().then(() => parseGguf(b, F));
  const load = (root: string, b: Buffer) => writeFile(path.join(root, F), b).then(() => loadCheckpoint(path.join(root, F)));

  it('rejects bad magic and versions', () =>
    withTempDir(async (root) => {
      const b = good();
      const magic = Buffer.from(b);
      magic.write('GGML', 0, 'latin1');
      await expectFailure(load(root, magic), ModelFormatError, F, 'bad magic');
      for (const [v, hint] of [[1, 'obsolete'], [7, 'versions 2 and 3'], [0x03000000, 'big-endian']] as const) {
        const ver = Buffer.from(b);
        ver.writeUInt32LE(v, 4);
        await expectFailure(parse(ver), UnsupportedModelError, F, hint);
      }
      await expectFailure(parse(b.subarray(0, 3)), ModelFormatError, F, 'bad magic');
    }));

  it('bounds counts and string lengths by the bytes left, and refuses deep nesting', async () => {
    const b = good();
    const absurd = Buffer.from(b);
    absurd.writeBigUInt64LE(BigInt(b.length), 8); // n_tensors
    await expectFailure(parse(absurd), ModelFormatError, F, /tensor count \d+ at byte 8 is impossible/);
    const absurdKv = Buffer.from(b);
    absurdKv.writeBigUInt64LE(2n ** 63n, 16);
    await expectFailure(parse(absurdKv), ModelFormatError, F, 'metadata count');
    const longKey = Buffer.from(b);
    longKey.writeBigUInt64LE(BigInt(b.length), 24); // length of the first key
    await expectFailure(parse(longKey), ModelFormatError, F, 'runs past the end of the file');
    const tokens = ggufMetadata(TINY).find(([k]) => k === 'tokenizer.ggml.tokens')!;
    const bigArray = Buffer.from(b);
    const at = bigArray.indexOf('tokenizer.ggml.tokens') + 'tokenizer.ggml.tokens'.length + 4 + 4; // past key, type, elem type
    expect(bigArray.readBigUInt64LE(at)).toBe(BigInt((tokens[2] as [number, string[]])[1].length));
    bigArray.writeBigUInt64LE(2n ** 40n, at);
    await expectFailure(parse(bigArray), ModelFormatError, F, 'element count of metadata tokenizer.ggml.tokens');
    let nested: unknown = [T.U8, [1]];
    for (let i = 0; i < 20; i++) nested = [T.ARRAY, [nested]];
    await expectFailure(parse(ggufBytes({ metadata: [['deep', T.ARRAY, nested]], tensors: [] })), ModelFormatError, F, 'nests arrays');
    await expectFailure(parse(b.subarray(0, 20)), ModelFormatError, F, 'truncated');
    const badType = ggufBytes({ metadata: [['k', T.U8, 1]], tensors: [] });
    badType.writeUInt32LE(99, 24 + 8 + 1); // the value type after key "k"
    await expectFailure(parse(badType), ModelFormatError, F, 'unknown value type 99');
  });

  it('rejects tensor data past EOF, misaligned offsets, bad alignment and dimension counts', () =>
    withTempDir(async (root) => {
      const b = good();
      await expectFailure(load(root, b.subarray(0, b.length - 64)), ModelFormatError, F, 'runs past the end of the file');
      await expectFailure(parse(good([...ggufMetadata(TINY), ['general.alignment', T.U32, 24]])), ModelFormatError, F, 'power of two');
      const ts = tensors();
      const misaligned = ggufBytes({ metadata: ggufMetadata(TINY), tensors: ts });
      const off = misaligned.indexOf(ts[1]!.name) + ts[1]!.name.length + 4 + 8 * ts[1]!.shape.length + 4;
      misaligned.writeBigUInt64LE(misaligned.readBigUInt64LE(off) + 4n, off);
      await expectFailure(parse(misaligned), ModelFormatError, F, `tensor ${ts[1]!.name} data offset`);
      const overlap = ggufBytes({ metadata: ggufMetadata(TINY), tensors: ts });
      overlap.writeBigUInt64LE(0n, off);
      await expectFailure(parse(overlap), ModelFormatError, F, 'overlap');
      const dims = ggufBytes({ metadata: [], tensors: [{ name: 't', shape: [1, 1, 1, 1, 1], type: GGML.F32, data: new Uint8Array(4) }] });
      await expectFailure(parse(dims), ModelFormatError, F, 'tensor t has 5 dimensions');
      const hugeDim = ggufBytes({ metadata: [], tensors: [{ name: 't', shape: [4, 4], type: GGML.F32, data: new Uint8Array(64) }] });
      hugeDim.writeBigUInt64LE(2n ** 52n, hugeDim.indexOf('t') + 1 + 4);
      await expectFailure(parse(hugeDim), ModelFormatError, F, 'tensor t data');
    }));

  it('names unsupported tensor types, architectures and tokenizers', async () => {
    const IQ2_XXS = 16; // a ggml type kvpack does not read
    const ts = tensors().map((t) => (t.name === 'blk.1.ffn_up.weight' ? { ...t, type: IQ2_XXS, data: new Uint8Array(66 * 8) } : t));
    await expectFailure(parse(good(undefined, ts)), UnsupportedModelError, F, 'tensor blk.1.ffn_up.weight has type IQ2_XXS (16)');
    const q8 = [{ name: 'x', shape: [2, 16], type: GGML.Q8_0, data: new Uint8Array(34) }];
    await expectFailure(parse(ggufBytes({ metadata: [], tensors: q8 })), ModelFormatError, F, 'not a multiple of 32');
    const withMeta = (edit: (m: GgufKv[]) => GgufKv[]) => Promise.resolve().then(() => ggufCheckpoint(good(edit(ggufMetadata(TINY))), F));
    const set = (key: string, type: number, value: unknown) => (m: GgufKv[]) =>
      m.map((kv): GgufKv => (kv[0] === key ? [key, type, value] : kv));
    await expectFailure(withMeta(set('general.architecture', T.STRING, 'phi3')), UnsupportedModelError, F, 'architecture "phi3" is not supported (supported: llama');
    await expectFailure(withMeta(set('tokenizer.ggml.model', T.STRING, 'bert')), UnsupportedModelError, F, 'tokenizer model "bert"');
    await expectFailure(withMeta((m) => m.filter(([k]) => !k.startsWith('tokenizer.'))), ModelFormatError, F, 'no embedded tokenizer');
    await expectFailure(withMeta((m) => m.filter(([k]) => k !== 'llama.block_count')), ModelFormatError, F, 'llama.block_count is missing');
    await expectFailure(withMeta(set('llama.embedding_length', T.STRING, 'x')), ModelFormatError, F, 'must be a number');
    await expectFailure(withMeta(set('llama.feed_forward_length', T.ARRAY, [T.U32, [64, 64]])), UnsupportedModelError, F, 'per-layer');
    await expectFailure(withMeta(set('llama.attention.head_count_kv', T.U32, 3)), ModelFormatError, F, 'not a multiple');
    await expectFailure(withMeta(set('tokenizer.ggml.tokens', T.ARRAY, [T.U32, [1, 2]])), ModelFormatError, F, 'array of strings');
    await expectFailure(withMeta(set('tokenizer.ggml.scores', T.ARRAY, [T.F32, [1]])), ModelFormatError, F, 'tokenizer.ggml.scores must be an array of 64 numbers');
    const scaling = (type: string) => (m: GgufKv[]): GgufKv[] => [...m, ['llama.rope.scaling.type', T.STRING, type], ['llama.rope.scaling.factor', T.F32, 4]];
    await expectFailure(withMeta(scaling('longrope')), UnsupportedModelError, F, 'RoPE scaling "longrope" is not supported');
    const badFreqs = [...tensors(), { name: 'rope_freqs.weight', shape: [3], type: GGML.F32, data: new Uint8Array(12) }];
    await expectFailure(Promise.resolve().then(() => ggufCheckpoint(good(undefined, badFreqs), F)), ModelFormatError, F, 'rope_freqs.weight has shape [3]');
  });
});

describe('llama2.c corruption', () => {
  it('rejects truncated files, nonsense headers, newer export versions and missing or bad tokenizers', () =>
    withTempDir(async (root) => {
      const file = path.join(root, 'm.bin');
      const good = llama2cBytes(TINY, randomWeights(TINY), false);
      const tokFile = path.join(root, 'tokenizer.bin');
      const tok = llama2cTokenizerBytes(tinyVocab(TINY.vocabSize));
      const load = async (b: Buffer) => {
        await writeFile(file, b);
        return loadCheckpoint(file);
      };
      await expectFailure(load(good), ModelFormatError, 'm.bin', 'no tokenizer found beside it (looked for tok64.bin, tokenizer.bin)');
      await writeFile(tokFile, tok);
      await expect(load(good)).resolves.toBeDefined();
      await expectFailure(load(good.subarray(0, good.length - 4)), ModelFormatError, 'm.bin', /is \d+ bytes but its header .* implies \d+/);
      await expectFailure(load(good.subarray(0, 10)), ModelFormatError, 'm.bin', 'too short');
      const neg = Buffer.from(good);
      neg.writeInt32LE(-5, 8);
      await expectFailure(load(neg), ModelFormatError, 'm.bin', 'header field n_layers is -5');
      const huge = Buffer.from(good);
      huge.writeInt32LE(2 ** 31 - 1, 0);
      huge.writeInt32LE(1, 12);
      huge.writeInt32LE(1, 16);
      await expectFailure(load(huge), ModelFormatError, 'm.bin', 'implies');
      const layers = Buffer.from(good);
      layers.writeInt32LE(2 ** 31 - 1, 8); // must fail on size before building a per-layer table
      await expectFailure(load(layers), ModelFormatError, 'm.bin', 'layers 2147483647');
      const v1 = Buffer.from(good);
      v1.writeUInt32LE(0x616b3432, 0);
      await expectFailure(load(v1), UnsupportedModelError, 'm.bin', 'v1/v2');
      await writeFile(tokFile, tok.subarray(0, 50));
      await expectFailure(load(good), ModelFormatError, 'tokenizer.bin', '');
      await expectFailure(loadCheckpoint(file, { tokenizer: path.join(root, 'nope.bin') }), ModelFormatError, 'nope.bin', /not found|no such file/);
    }));
});

describe('loadCheckpoint dispatch', () => {
  it('says when a path does not exist or has no recognisable format', () =>
    withTempDir(async (root) => {
      await expectFailure(loadCheckpoint(path.join(root, 'missing.gguf')), ModelFormatError, 'missing.gguf', 'no such file or directory');
      const odd = path.join(root, 'weights.pt');
      await writeFile(odd, 'not a model');
      await expectFailure(loadCheckpoint(odd), UnsupportedModelError, 'weights.pt', 'cannot tell the checkpoint format');
      const empty = path.join(root, 'empty.gguf');
      await writeFile(empty, '');
      await expectFailure(loadCheckpoint(empty), ModelFormatError, 'empty.gguf', 'bad magic');
    }));
});
