import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { BLOCK_FORMATS } from '../kernels/ggml/index.js';
import { f32ToF16 } from '../kernels/half.js';
import { expectedShapes } from '../model/checkpoint.js';
import { frequencies, type RopeScaling } from '../kernels/rope.js';
import type { ModelConfig } from '../model/config.js';
import { GGUF_GLOBAL_NAMES, GGUF_LAYER_NAMES } from '../model/gguf.js';
import { HF_GLOBAL_NAMES, HF_LAYER_NAMES } from '../model/hf.js';
import { seededRandom } from '../util/random.js';

/**
 * Writers for the checkpoint formats kvpack reads: safetensors, GGUF (v2/v3) and an HF directory, and
 * random Llama weights to fill them. For the tests and the bench only (not part of the library): they
 * make models of any shape without downloading one, write one set of weights both ways to compare
 * loaders and engines, and write broken files on purpose, so they check nothing the readers check.
 */

// ---------------------------------------------------------------------------------------------------
// Tensor names: the loaders own the tables; a canonical name maps back to the file's name.

function fileName(canonical: string, global: Record<string, string>, layer: Record<string, (l: number) => string>, prefix: string): string {
  for (const [name, c] of Object.entries(global)) if (c === canonical) return name;
  const l = Number(/^layers\.(\d+)\./.exec(canonical)?.[1]);
  for (const [suffix, c] of Object.entries(layer)) if (c(l) === canonical) return `${prefix}${l}.${suffix}`;
  throw new Error(`no file name for tensor ${canonical}`);
}

/** Canonical name → HF name (`model.layers.0.self_attn.q_proj.weight`). */
export const hfName = (canonical: string): string => fileName(canonical, HF_GLOBAL_NAMES, HF_LAYER_NAMES, 'model.layers.');
/** Canonical name → GGUF name (`blk.0.attn_q.weight`). */
export const ggufName = (canonical: string): string => fileName(canonical, GGUF_GLOBAL_NAMES, GGUF_LAYER_NAMES, 'blk.');

// ---------------------------------------------------------------------------------------------------
// Number encodings

export type FloatDType = 'F32' | 'F16' | 'BF16';

export function encodeF32(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

export function encodeF16(values: Float32Array): Uint8Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f32ToF16(values[i]!);
  return new Uint8Array(out.buffer);
}

/** bfloat16 with round-to-nearest-even (NaN kept quiet), as torch converts. */
export function encodeBF16(values: Float32Array): Uint8Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const b = bits[i]!;
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | 0x40;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return new Uint8Array(out.buffer);
}

/** Q8_0 as llama.cpp's reference quantizer makes it: per block of 32, d = max|x|/127, q = round(x/d). */
export function encodeQ8_0(values: Float32Array): Uint8Array {
  const { blockValues: Q8_0_BLOCK, blockBytes: Q8_0_BLOCK_BYTES } = BLOCK_FORMATS.q8_0;
  if (values.length % Q8_0_BLOCK !== 0) throw new RangeError(`Q8_0 needs a multiple of ${Q8_0_BLOCK} values, got ${values.length}`);
  const blocks = values.length / Q8_0_BLOCK;
  const out = new Uint8Array(blocks * Q8_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let b = 0; b < blocks; b++) {
    const base = b * Q8_0_BLOCK;
    let amax = 0;
    for (let i = 0; i < Q8_0_BLOCK; i++) amax = Math.max(amax, Math.abs(values[base + i]!));
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    const o = b * Q8_0_BLOCK_BYTES;
    view.setUint16(o, f32ToF16(d), true);
    for (let i = 0; i < Q8_0_BLOCK; i++) view.setInt8(o + 2 + i, Math.round(values[base + i]! * id));
  }
  return out;
}

export function encode(values: Float32Array, dtype: FloatDType): Uint8Array {
  return dtype === 'F32' ? encodeF32(values) : dtype === 'F16' ? encodeF16(values) : encodeBF16(values);
}

// ---------------------------------------------------------------------------------------------------
// safetensors

export interface SafetensorsTensor {
  name: string;
  /** Any string: the tests write dtypes the reader refuses. */
  dtype: string;
  /** Row-major, outermost first. */
  shape: number[];
  data: Uint8Array;
}

/** Header, then each tensor's bytes in the given order; the header is space-padded to 8 bytes, as the format suggests. */
function safetensorsParts(tensors: readonly SafetensorsTensor[], metadata?: Record<string, string>): Uint8Array[] {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  return [len, headerBytes, ...tensors.map((t) => t.data)];
}

export function safetensorsBytes(tensors: readonly SafetensorsTensor[], metadata?: Record<string, string>): Buffer {
  return Buffer.concat(safetensorsParts(tensors, metadata));
}

export function writeSafetensors(file: string, tensors: readonly SafetensorsTensor[], metadata?: Record<string, string>): Promise<void> {
  return writeParts(file, safetensorsParts(tensors, metadata));
}

// ---------------------------------------------------------------------------------------------------
// GGUF

/** GGUF metadata value type ids. */
export const GGUF_TYPE = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;
/** ggml tensor type ids (Q4_0 only to test that the reader names what it refuses). */
export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;

/** A metadata entry; an array's value is `[elemType, items]` (items may be arrays again). */
export type GgufKv = [key: string, type: number, value: unknown];

export interface GgufTensor {
  name: string;
  /** Row-major, outermost first (written reversed, as GGUF wants). */
  shape: number[];
  type: number;
  data: Uint8Array;
}

export interface GgufContents {
  version?: number;
  metadata: readonly GgufKv[];
  tensors: readonly GgufTensor[];
  /** Must agree with a `general.alignment` entry, if any (default 32). */
  alignment?: number;
}

function ggufString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(b.length));
  return Buffer.concat([len, b]);
}

function ggufValue(type: number, v: unknown): Buffer {
  const b = Buffer.alloc(8);
  switch (type) {
    case GGUF_TYPE.U8: b.writeUInt8(v as number); return b.subarray(0, 1);
    case GGUF_TYPE.I8: b.writeInt8(v as number); return b.subarray(0, 1);
    case GGUF_TYPE.U16: b.writeUInt16LE(v as number); return b.subarray(0, 2);
    case GGUF_TYPE.I16: b.writeInt16LE(v as number); return b.subarray(0, 2);
    case GGUF_TYPE.U32: b.writeUInt32LE(v as number); return b.subarray(0, 4);
    case GGUF_TYPE.I32: b.writeInt32LE(v as number); return b.subarray(0, 4);
    case GGUF_TYPE.F32: b.writeFloatLE(v as number); return b.subarray(0, 4);
    case GGUF_TYPE.BOOL: b.writeUInt8(v ? 1 : 0); return b.subarray(0, 1);
    case GGUF_TYPE.STRING: return ggufString(v as string);
    case GGUF_TYPE.ARRAY: {
      const [elemType, items] = v as [number, unknown[]];
      const head = Buffer.alloc(12);
      head.writeUInt32LE(elemType);
      head.writeBigUInt64LE(BigInt(items.length), 4);
      return Buffer.concat([head, ...items.map((x) => ggufValue(elemType, x))]);
    }
    case GGUF_TYPE.U64: b.writeBigUInt64LE(BigInt(v as number | bigint)); return b;
    case GGUF_TYPE.I64: b.writeBigInt64LE(BigInt(v as number | bigint)); return b;
    case GGUF_TYPE.F64: b.writeDoubleLE(v as number); return b;
    default: throw new Error(`GGUF writer: bad value type ${type}`);
  }
}

/** A tensor's entry in a GGUF header: its data (`bytes` long) is written later, or never (sparse). */
export type GgufTensorInfo = Omit<GgufTensor, 'data'> & { bytes: number };

/** Header, metadata, tensor infos and padding: tensor data starts right after, each one aligned. */
function ggufHeader(o: Omit<GgufContents, 'tensors'>, tensors: readonly GgufTensorInfo[]): Buffer {
  const align = o.alignment ?? 32;
  const head = Buffer.alloc(24);
  head.write('GGUF', 0, 'latin1');
  head.writeUInt32LE(o.version ?? 3, 4);
  head.writeBigUInt64LE(BigInt(tensors.length), 8);
  head.writeBigUInt64LE(BigInt(o.metadata.length), 16);
  const parts: Buffer[] = [head];
  for (const [key, type, value] of o.metadata) {
    const t = Buffer.alloc(4);
    t.writeUInt32LE(type);
    parts.push(ggufString(key), t, ggufValue(type, value));
  }
  let offset = 0;
  for (const t of tensors) {
    const info = Buffer.alloc(4 + 8 * t.shape.length + 12);
    info.writeUInt32LE(t.shape.length);
    [...t.shape].reverse().forEach((d, j) => info.writeBigUInt64LE(BigInt(d), 4 + 8 * j));
    info.writeUInt32LE(t.type, 4 + 8 * t.shape.length);
    info.writeBigUInt64LE(BigInt(offset), 8 + 8 * t.shape.length);
    parts.push(ggufString(t.name), info);
    offset += t.bytes + padding(t.bytes, align);
  }
  const header = Buffer.concat(parts);
  return Buffer.concat([header, new Uint8Array(padding(header.length, align))]);
}

const padding = (n: number, align: number): number => (align - (n % align)) % align;

/** Header, metadata, tensor infos, padding, then each tensor's data aligned. */
function ggufParts(o: GgufContents): Uint8Array[] {
  const align = o.alignment ?? 32;
  const out: Uint8Array[] = [ggufHeader(o, o.tensors.map((t) => ({ ...t, bytes: t.data.byteLength })))];
  for (const t of o.tensors) out.push(t.data, new Uint8Array(padding(t.data.byteLength, align)));
  return out;
}

export function ggufBytes(o: GgufContents): Buffer {
  return Buffer.concat(ggufParts(o));
}

export function writeGguf(file: string, o: GgufContents): Promise<void> {
  return writeParts(file, ggufParts(o));
}

/**
 * Writes a GGUF tensor by tensor, `data(t)` making each tensor's bytes when its turn comes (files larger
 * than memory); without `data` nothing is written after the header and the file is extended to its
 * declared size (sparse: a header that declares more than the disk holds).
 */
export async function writeGgufTensors(
  file: string, o: Omit<GgufContents, 'tensors'>, tensors: readonly GgufTensorInfo[], data?: (t: GgufTensorInfo) => Uint8Array,
): Promise<void> {
  const align = o.alignment ?? 32;
  const header = ggufHeader(o, tensors);
  if (data) {
    await writeParts(file, (function* () {
      yield header;
      for (const t of tensors) yield* [data(t), new Uint8Array(padding(t.bytes, align))];
    })());
    return;
  }
  await writeParts(file, [header]);
  await fsp.truncate(file, header.length + tensors.reduce((sum, t) => sum + t.bytes + padding(t.bytes, align), 0));
}

/** `${arch}.*` model metadata llama.cpp and kvpack read for `c`. */
export function ggufModelMetadata(c: ModelConfig, name: string): GgufKv[] {
  const T = GGUF_TYPE;
  const arch = c.architecture;
  return [
    ['general.architecture', T.STRING, arch],
    ['general.name', T.STRING, name],
    [`${arch}.context_length`, T.U32, c.maxContext],
    [`${arch}.embedding_length`, T.U32, c.hiddenSize],
    [`${arch}.block_count`, T.U32, c.numLayers],
    [`${arch}.feed_forward_length`, T.U32, c.intermediateSize],
    [`${arch}.attention.head_count`, T.U32, c.numHeads],
    [`${arch}.attention.head_count_kv`, T.U32, c.numKvHeads],
    [`${arch}.rope.freq_base`, T.F32, c.ropeTheta],
    [`${arch}.attention.layer_norm_rms_epsilon`, T.F32, c.rmsEps],
  ];
}

/** The GGUF tensor entries of a Llama of shape `c`: vectors F32, matrices in `dtype` (for writeGgufTensors). */
export function llamaGgufTensorInfos(c: ModelConfig, dtype: FloatDType): GgufTensorInfo[] {
  return [...expectedShapes(c)].map(([canonical, shape]) => {
    const count = shape.reduce((a, b) => a * b, 1);
    const type = shape.length === 1 ? GGML.F32 : GGML[dtype];
    return { name: ggufName(canonical), shape, type, bytes: count * (type === GGML.F32 ? 4 : 2) };
  });
}

/** Writes parts one after another to a temporary name, then renames: a reader never sees half a file. */
async function writeParts(file: string, parts: Iterable<Uint8Array>): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  const fh = await fsp.open(tmp, 'w');
  try {
    for (const p of parts) {
      // Large writes can be partial; keep going until each part is out.
      let done = 0;
      while (done < p.byteLength) {
        const { bytesWritten } = await fh.write(p, done, p.byteLength - done);
        done += bytesWritten;
      }
    }
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, file);
}

// ---------------------------------------------------------------------------------------------------
// Random Llama models

/** f32 values of every canonical tensor a config needs. */
export type Weights = Map<string, { shape: number[]; values: Float32Array }>;

/** N(0, std²) values by Box-Muller. */
function normals(count: number, std: number, next: () => number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i += 2) {
    const u = 1 - next(); // (0, 1]: log stays finite
    const r = std * Math.sqrt(-2 * Math.log(u));
    const a = 2 * Math.PI * next();
    out[i] = r * Math.cos(a);
    if (i + 1 < count) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

/**
 * Random weights of `config`'s shape: matrices and biases N(0, 0.02²) (the usual initializer, so
 * activations stay in a realistic range), norms all ones.
 */
export function randomWeights(config: ModelConfig, seed = 1): Weights {
  const next = seededRandom(seed);
  const out: Weights = new Map();
  for (const [name, shape] of expectedShapes(config)) {
    const count = shape.reduce((a, d) => a * d, 1);
    const isNorm = /norm$/.test(name);
    // Qwen3's per-head q/k norms vary around 1, so a test sees their weights applied
    const values = /\.[qk]_norm$/.test(name)
      ? normals(count, 0.1, next).map((v) => 1 + v)
      : isNorm ? new Float32Array(count).fill(1) : normals(count, 0.02, next);
    out.set(name, { shape, values });
  }
  return out;
}

/** A random model and the dtype its matrices are stored in; the same seed gives the same values in every dtype. */
export interface RandomLlama {
  config: ModelConfig;
  dtype: FloatDType;
  seed: number;
  weights: Weights;
}

export function randomLlama(config: ModelConfig, dtype: FloatDType = 'F32', seed = 1): RandomLlama {
  return { config, dtype, seed, weights: randomWeights(config, seed) };
}

/** HF config.json for a config (token ids 1 and 2 unless `extra` says otherwise). */
export function hfConfigJson(c: ModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const arch = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' }[c.architecture];
  return {
    architectures: [arch],
    model_type: c.architecture,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxContext,
    rms_norm_eps: c.rmsEps,
    rope_theta: c.ropeTheta,
    rope_scaling: hfRopeScaling(c.ropeScaling),
    tie_word_embeddings: c.tiedEmbeddings,
    bos_token_id: 1,
    eos_token_id: 2,
    ...extra,
  };
}

/** config.json's rope_scaling for a scaling (null: none), as transformers writes it. */
export function hfRopeScaling(s: RopeScaling | undefined): Record<string, unknown> | null {
  switch (s?.kind) {
    case undefined:
    case 'none':
      return null;
    case 'linear':
      return { rope_type: 'linear', factor: s.factor };
    case 'llama3':
      return {
        rope_type: 'llama3', factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor,
        original_max_position_embeddings: s.originalMaxPositions,
      };
    case 'yarn':
      return { rope_type: 'yarn', factor: s.factor, original_max_position_embeddings: s.originalMaxPositions, beta_fast: s.betaFast, beta_slow: s.betaSlow };
    case 'divisors':
      throw new Error('config.json has no form for per-pair RoPE divisors');
  }
}

/**
 * A scaling as llama.cpp's converter stores it in a GGUF: `rope.scaling.*` metadata for linear and YaRN,
 * per-pair divisors in a `rope_freqs` tensor for Llama 3.1.
 */
function ggufRopeScaling(c: ModelConfig): { metadata: GgufKv[]; tensors: GgufTensor[] } {
  const T = GGUF_TYPE;
  const s = c.ropeScaling;
  const key = (k: string) => `${c.architecture}.rope.scaling.${k}`;
  switch (s?.kind) {
    case undefined:
    case 'none':
      return { metadata: [], tensors: [] };
    case 'linear':
      return { metadata: [[key('type'), T.STRING, 'linear'], [key('factor'), T.F32, s.factor]], tensors: [] };
    case 'yarn':
      return {
        metadata: [
          [key('type'), T.STRING, 'yarn'], [key('factor'), T.F32, s.factor], [key('original_context_length'), T.U32, s.originalMaxPositions],
          [key('yarn_beta_fast'), T.F32, s.betaFast], [key('yarn_beta_slow'), T.F32, s.betaSlow],
        ],
        tensors: [],
      };
    case 'llama3':
    case 'divisors': {
      const plain = frequencies(c.ropeTheta, c.headDim, { kind: 'none' });
      const scaled = frequencies(c.ropeTheta, c.headDim, s);
      const divisors = Float32Array.from(plain, (f, i) => f / scaled[i]!);
      return { metadata: [], tensors: [{ name: 'rope_freqs.weight', shape: [divisors.length], type: GGML.F32, data: encodeF32(divisors) }] };
    }
  }
}

/** Writes config.json, model.safetensors (in the model's dtype) and a copy of `tokenizerJson` into `dir`. */
export async function writeHfDir(dir: string, model: RandomLlama, tokenizerJson: string, ids: { bos?: number; eos?: number } = {}): Promise<void> {
  const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[model.dtype];
  const config = hfConfigJson(model.config, { head_dim: model.config.headDim, torch_dtype: torchDtype, bos_token_id: ids.bos, eos_token_id: ids.eos });
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  await fsp.copyFile(tokenizerJson, path.join(dir, 'tokenizer.json'));
  const tensors = [...model.weights].map(([name, t]) => ({ name: hfName(name), dtype: model.dtype, shape: t.shape, data: encode(t.values, model.dtype) }));
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
}

/**
 * HF "rotate half" rows → llama.cpp's interleaved RoPE rows, per head: row i of the first half
 * goes to 2i, row i of the second half to 2i+1 (convert_hf_to_gguf.py's `permute`). Rows are
 * moved as whole byte runs, so it works for any row-wise dtype.
 */
export function permuteRowsForGguf(data: Uint8Array, rows: number, heads: number): Uint8Array {
  const rowBytes = data.byteLength / rows;
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Uint8Array(data.byteLength);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      const base = h * headDim;
      out.set(data.subarray((base + i) * rowBytes, (base + i + 1) * rowBytes), (base + 2 * i) * rowBytes);
      out.set(data.subarray((base + half + i) * rowBytes, (base + half + i + 1) * rowBytes), (base + 2 * i + 1) * rowBytes);
    }
  }
  return out;
}

export interface GgufTokenizerSource {
  /** Path of an HF tokenizer.json with a byte-level BPE model. */
  tokenizerJson: string;
  /** llama.cpp pre-tokenizer name, e.g. 'smollm'. */
  pre: string;
  bos?: number;
  eos?: number;
  addBos?: boolean;
}

/** tokenizer.ggml.* metadata (gpt2 model) from an HF byte-level BPE tokenizer.json. */
export async function ggufTokenizerMetadata(src: GgufTokenizerSource, vocabSize: number): Promise<GgufKv[]> {
  const T = GGUF_TYPE;
  const json = JSON.parse(await fsp.readFile(src.tokenizerJson, 'utf8')) as {
    model: { type: string; vocab: Record<string, number>; merges: (string | [string, string])[] };
    added_tokens?: { id: number; content: string; special?: boolean }[];
  };
  if (json.model.type !== 'BPE') throw new Error(`${src.tokenizerJson}: model type ${json.model.type}, expected BPE`);
  const tokens = new Array<string>(vocabSize);
  const types = new Array<number>(vocabSize).fill(1); // NORMAL
  for (const [piece, id] of Object.entries(json.model.vocab)) if (id < vocabSize) tokens[id] = piece;
  for (const t of json.added_tokens ?? []) {
    if (t.id >= vocabSize) continue;
    tokens[t.id] = t.content;
    types[t.id] = t.special ? 3 : 4; // CONTROL : USER_DEFINED
  }
  for (let i = 0; i < vocabSize; i++) {
    // A model wider than its tokenizer (padded vocab): llama.cpp marks the padding UNUSED.
    if (tokens[i] === undefined) { tokens[i] = `[PAD${i}]`; types[i] = 5; }
  }
  const merges = json.model.merges.map((m) => (typeof m === 'string' ? m : m.join(' ')));
  const meta: GgufKv[] = [
    ['tokenizer.ggml.model', T.STRING, 'gpt2'],
    ['tokenizer.ggml.pre', T.STRING, src.pre],
    ['tokenizer.ggml.tokens', T.ARRAY, [T.STRING, tokens]],
    ['tokenizer.ggml.token_type', T.ARRAY, [T.I32, types]],
    ['tokenizer.ggml.merges', T.ARRAY, [T.STRING, merges]],
  ];
  if (src.bos !== undefined) meta.push(['tokenizer.ggml.bos_token_id', T.U32, src.bos]);
  if (src.eos !== undefined) meta.push(['tokenizer.ggml.eos_token_id', T.U32, src.eos]);
  meta.push(['tokenizer.ggml.add_bos_token', T.BOOL, src.addBos ?? false]);
  return meta;
}

export interface GgufWriteOptions {
  name?: string;
  /** Store matrices as Q8_0 instead of the model's own dtype (norms stay F32 either way). */
  quantize?: 'Q8_0';
}

/**
 * Writes `model` as a GGUF of its architecture that llama.cpp loads: its tensor names, Q/K rows in its
 * RoPE layout (llama's converter pairs dimensions 2i, 2i+1; qwen keeps HF's halves), `<arch>.*` metadata
 * with any RoPE scaling, and a gpt2 tokenizer section. Vectors are stored as F32 (llama.cpp's
 * converter does the same); matrices keep the model's dtype unless `quantize` says otherwise.
 */
export async function writeLlamaGguf(file: string, model: RandomLlama, tok: GgufTokenizerSource, options: GgufWriteOptions = {}): Promise<void> {
  const T = GGUF_TYPE;
  const c = model.config;
  const a = c.architecture;
  const rope = ggufRopeScaling(c);
  const metadata: GgufKv[] = [
    ...ggufModelMetadata(c, options.name ?? 'random-llama'),
    ['general.file_type', T.U32, options.quantize === 'Q8_0' ? 7 : { F32: 0, F16: 1, BF16: 32 }[model.dtype]],
    [`${a}.attention.key_length`, T.U32, c.headDim],
    [`${a}.attention.value_length`, T.U32, c.headDim],
    [`${a}.rope.dimension_count`, T.U32, c.headDim],
    [`${a}.vocab_size`, T.U32, c.vocabSize],
    ...rope.metadata,
    ...(await ggufTokenizerMetadata(tok, c.vocabSize)),
  ];
  const permute = a === 'llama' || a === 'mistral';
  const tensors: GgufTensor[] = [...model.weights].map(([canonical, t]) => {
    const name = ggufName(canonical);
    if (t.shape.length === 1) return { name, shape: t.shape, type: GGML.F32, data: encodeF32(t.values) };
    const q8 = options.quantize === 'Q8_0';
    let data = q8 ? encodeQ8_0(t.values) : encode(t.values, model.dtype);
    if (permute && name.endsWith('.attn_q.weight')) data = permuteRowsForGguf(data, t.shape[0]!, c.numHeads);
    else if (permute && name.endsWith('.attn_k.weight')) data = permuteRowsForGguf(data, t.shape[0]!, c.numKvHeads);
    return { name, shape: t.shape, type: q8 ? GGML.Q8_0 : GGML[model.dtype], data };
  });
  await writeGguf(file, { metadata, tensors: [...tensors, ...rope.tensors] });
}
