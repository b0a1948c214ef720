import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { bf16ToF32, f16ToF32, f32ToF16 } from '../kernels/half.js';
import { seededRandom } from '../util/random.js';
import type { ModelConfig } from './config.js';
import { Q8_0_BLOCK, Q8_0_BLOCK_BYTES } from './tensor.js';

/**
 * Writers for the checkpoint formats kvpack reads: safetensors, GGUF v3, and an HF directory. They
 * exist so the benchmark and the tests can make models of any shape (random weights) without
 * downloading one, and so one set of weights can be written both ways to compare loaders and engines.
 */

// ---------------------------------------------------------------------------------------------------
// safetensors

export type SafetensorsDType = 'F32' | 'F16' | 'BF16';

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDType;
  /** Row-major, outermost first. */
  shape: number[];
  data: Uint8Array;
}

const ST_ELEMENT_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };

/** Writes a single-file safetensors checkpoint (tensors in the given order). */
export async function writeSafetensors(
  file: string, tensors: readonly SafetensorsTensor[], metadata?: Record<string, string>,
): Promise<void> {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const need = t.shape.reduce((a, d) => a * d, 1) * ST_ELEMENT_BYTES[t.dtype];
    if (need !== t.data.byteLength) {
      throw new RangeError(`tensor ${t.name}: ${t.dtype} [${t.shape.join(', ')}] needs ${need} bytes, got ${t.data.byteLength}`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + need] };
    offset += need;
  }
  let json = JSON.stringify(header);
  // The format suggests padding the header with spaces so the data starts 8-byte aligned.
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  await writeParts(file, [len, headerBytes, ...tensors.map((t) => t.data)]);
}

// ---------------------------------------------------------------------------------------------------
// GGUF

export type GgufScalarType =
  | 'uint8' | 'int8' | 'uint16' | 'int16' | 'uint32' | 'int32' | 'float32' | 'bool' | 'string' | 'uint64' | 'int64' | 'float64';
/** A scalar type, or `type[]` for an array of that type. */
export type GgufMetaType = GgufScalarType | `${GgufScalarType}[]`;
export type GgufMetaValue = number | bigint | boolean | string | readonly (number | bigint | boolean | string)[];
export type GgufMetaEntry = [key: string, type: GgufMetaType, value: GgufMetaValue];

const GGUF_VALUE_TYPE: Record<GgufScalarType, number> = {
  uint8: 0, int8: 1, uint16: 2, int16: 3, uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, uint64: 10, int64: 11, float64: 12,
};
const GGUF_ARRAY = 9;

/** ggml tensor type ids. */
export const GgmlType = { F32: 0, F16: 1, Q8_0: 8, BF16: 30 } as const;
export type GgmlTypeName = keyof typeof GgmlType;

export interface GgufTensor {
  name: string;
  type: GgmlTypeName;
  /** GGUF order: innermost (contiguous) dimension first, i.e. [cols, rows] for a matrix. */
  dims: number[];
  data: Uint8Array;
}

export const GGUF_ALIGNMENT = 32;

/** Bytes a ggml tensor of `count` elements takes. */
function ggmlBytes(type: GgmlTypeName, count: number): number {
  switch (type) {
    case 'F32': return count * 4;
    case 'F16':
    case 'BF16': return count * 2;
    case 'Q8_0': return (count / Q8_0_BLOCK) * Q8_0_BLOCK_BYTES;
  }
}

/** Grows as it is written; GGUF headers are small next to the tensor data. */
class ByteWriter {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u8(v: number): void { this.room(1); this.buf.writeUInt8(v, this.length); this.length += 1; }
  i8(v: number): void { this.room(1); this.buf.writeInt8(v, this.length); this.length += 1; }
  u16(v: number): void { this.room(2); this.buf.writeUInt16LE(v, this.length); this.length += 2; }
  i16(v: number): void { this.room(2); this.buf.writeInt16LE(v, this.length); this.length += 2; }
  u32(v: number): void { this.room(4); this.buf.writeUInt32LE(v, this.length); this.length += 4; }
  i32(v: number): void { this.room(4); this.buf.writeInt32LE(v, this.length); this.length += 4; }
  f32(v: number): void { this.room(4); this.buf.writeFloatLE(v, this.length); this.length += 4; }
  f64(v: number): void { this.room(8); this.buf.writeDoubleLE(v, this.length); this.length += 8; }
  u64(v: number | bigint): void { this.room(8); this.buf.writeBigUInt64LE(BigInt(v), this.length); this.length += 8; }
  i64(v: number | bigint): void { this.room(8); this.buf.writeBigInt64LE(BigInt(v), this.length); this.length += 8; }
  str(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.room(bytes.length);
    bytes.copy(this.buf, this.length);
    this.length += bytes.length;
  }
  pad(align: number): void {
    const n = (align - (this.length % align)) % align;
    this.room(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer { return this.buf.subarray(0, this.length); }
}

function writeScalar(w: ByteWriter, type: GgufScalarType, v: number | bigint | boolean | string, key: string): void {
  const bad = (): never => { throw new TypeError(`GGUF metadata ${key}: ${JSON.stringify(String(v))} is not a ${type}`); };
  if (type === 'string') return typeof v === 'string' ? w.str(v) : bad();
  if (type === 'bool') return typeof v === 'boolean' ? w.u8(v ? 1 : 0) : bad();
  if (type === 'uint64') return typeof v === 'number' || typeof v === 'bigint' ? w.u64(v) : bad();
  if (type === 'int64') return typeof v === 'number' || typeof v === 'bigint' ? w.i64(v) : bad();
  if (typeof v !== 'number') return bad();
  switch (type) {
    case 'uint8': return w.u8(v);
    case 'int8': return w.i8(v);
    case 'uint16': return w.u16(v);
    case 'int16': return w.i16(v);
    case 'uint32': return w.u32(v);
    case 'int32': return w.i32(v);
    case 'float32': return w.f32(v);
    case 'float64': return w.f64(v);
  }
}

/** Writes a GGUF v3 file: metadata, tensor infos, then each tensor's data 32-byte aligned. */
export async function writeGguf(file: string, metadata: readonly GgufMetaEntry[], tensors: readonly GgufTensor[]): Promise<void> {
  const w = new ByteWriter();
  w.u32(0x46554747); // "GGUF"
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, type, value] of metadata) {
    w.str(key);
    if (type.endsWith('[]')) {
      const elem = type.slice(0, -2) as GgufScalarType;
      if (!Array.isArray(value)) throw new TypeError(`GGUF metadata ${key}: ${type} needs an array`);
      w.u32(GGUF_ARRAY);
      w.u32(GGUF_VALUE_TYPE[elem]);
      w.u64(value.length);
      for (const v of value as readonly (number | bigint | boolean | string)[]) writeScalar(w, elem, v, key);
    } else {
      w.u32(GGUF_VALUE_TYPE[type as GgufScalarType]);
      writeScalar(w, type as GgufScalarType, value as number | bigint | boolean | string, key);
    }
  }
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    const count = t.dims.reduce((a, d) => a * d, 1);
    if (t.type === 'Q8_0' && t.dims[0]! % Q8_0_BLOCK !== 0) {
      throw new RangeError(`tensor ${t.name}: Q8_0 rows must be a multiple of ${Q8_0_BLOCK} long, got ${t.dims[0]}`);
    }
    const need = ggmlBytes(t.type, count);
    if (need !== t.data.byteLength) {
      throw new RangeError(`tensor ${t.name}: ${t.type} [${t.dims.join(', ')}] needs ${need} bytes, got ${t.data.byteLength}`);
    }
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(GgmlType[t.type]);
    w.u64(offset);
    parts.push(t.data);
    const padded = Math.ceil(need / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
    if (padded > need) parts.push(new Uint8Array(padded - need));
    offset += padded;
  }
  w.pad(GGUF_ALIGNMENT);
  await writeParts(file, [w.bytes(), ...parts]);
}

/** Writes parts one after another to a temporary name, then renames: a reader never sees half a file. */
async function writeParts(file: string, parts: readonly Uint8Array[]): Promise<void> {
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
// Number encodings

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

export function encode(values: Float32Array, dtype: SafetensorsDType): Uint8Array {
  return dtype === 'F32' ? encodeF32(values) : dtype === 'F16' ? encodeF16(values) : encodeBF16(values);
}

// ---------------------------------------------------------------------------------------------------
// Random Llama models

/** A model in HF naming and layout, ready for writeSafetensors. */
export interface RandomLlama {
  config: ModelConfig;
  dtype: SafetensorsDType;
  seed: number;
  tensors: SafetensorsTensor[];
}

const rng = seededRandom;

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
 * A Llama model with random weights of `config`'s shape and HF tensor names: matrices N(0, 0.02²)
 * (the usual initializer, so activations stay in a realistic range), norms all ones. The same seed
 * gives the same values in every dtype.
 */
export function randomLlama(config: ModelConfig, dtype: SafetensorsDType = 'F32', seed = 1): RandomLlama {
  const next = rng(seed);
  const tensors: SafetensorsTensor[] = [];
  const matrix = (name: string, rows: number, cols: number): void => {
    tensors.push({ name, dtype, shape: [rows, cols], data: encode(normals(rows * cols, 0.02, next), dtype) });
  };
  const ones = (name: string, n: number): void => {
    tensors.push({ name, dtype, shape: [n], data: encode(new Float32Array(n).fill(1), dtype) });
  };
  const h = config.hiddenSize;
  const q = config.numHeads * config.headDim;
  const kv = config.numKvHeads * config.headDim;
  matrix('model.embed_tokens.weight', config.vocabSize, h);
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    ones(`${p}.input_layernorm.weight`, h);
    matrix(`${p}.self_attn.q_proj.weight`, q, h);
    matrix(`${p}.self_attn.k_proj.weight`, kv, h);
    matrix(`${p}.self_attn.v_proj.weight`, kv, h);
    matrix(`${p}.self_attn.o_proj.weight`, h, q);
    ones(`${p}.post_attention_layernorm.weight`, h);
    matrix(`${p}.mlp.gate_proj.weight`, config.intermediateSize, h);
    matrix(`${p}.mlp.up_proj.weight`, config.intermediateSize, h);
    matrix(`${p}.mlp.down_proj.weight`, h, config.intermediateSize);
  }
  ones('model.norm.weight', h);
  if (!config.tiedEmbeddings) matrix('lm_head.weight', config.vocabSize, h);
  return { config, dtype, seed, tensors };
}

/** HF config.json for a Llama config. */
export function hfConfigJson(c: ModelConfig, extra: { bos?: number; eos?: number; dtype?: SafetensorsDType } = {}): Record<string, unknown> {
  const torchDtype = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[extra.dtype ?? 'F32'];
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxContext,
    rms_norm_eps: c.rmsEps,
    rope_theta: c.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: c.tiedEmbeddings,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    ...(extra.bos !== undefined ? { bos_token_id: extra.bos } : {}),
    ...(extra.eos !== undefined ? { eos_token_id: extra.eos } : {}),
    torch_dtype: torchDtype,
  };
}

/** Writes config.json, model.safetensors and a copy of `tokenizerJson` into `dir`. */
export async function writeHfDir(dir: string, model: RandomLlama, tokenizerJson: string, ids: { bos?: number; eos?: number } = {}): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await fsp.writeFile(path.join(dir, 'config.json'), JSON.stringify(hfConfigJson(model.config, { ...ids, dtype: model.dtype }), null, 2) + '\n');
  await fsp.copyFile(tokenizerJson, path.join(dir, 'tokenizer.json'));
  await writeSafetensors(path.join(dir, 'model.safetensors'), model.tensors, { format: 'pt' });
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

const GGUF_NAMES: [RegExp, string][] = [
  [/^model\.embed_tokens\.weight$/, 'token_embd.weight'],
  [/^model\.norm\.weight$/, 'output_norm.weight'],
  [/^lm_head\.weight$/, 'output.weight'],
  [/^model\.layers\.(\d+)\.input_layernorm\.weight$/, 'blk.$1.attn_norm.weight'],
  [/^model\.layers\.(\d+)\.self_attn\.q_proj\.weight$/, 'blk.$1.attn_q.weight'],
  [/^model\.layers\.(\d+)\.self_attn\.k_proj\.weight$/, 'blk.$1.attn_k.weight'],
  [/^model\.layers\.(\d+)\.self_attn\.v_proj\.weight$/, 'blk.$1.attn_v.weight'],
  [/^model\.layers\.(\d+)\.self_attn\.o_proj\.weight$/, 'blk.$1.attn_output.weight'],
  [/^model\.layers\.(\d+)\.post_attention_layernorm\.weight$/, 'blk.$1.ffn_norm.weight'],
  [/^model\.layers\.(\d+)\.mlp\.gate_proj\.weight$/, 'blk.$1.ffn_gate.weight'],
  [/^model\.layers\.(\d+)\.mlp\.up_proj\.weight$/, 'blk.$1.ffn_up.weight'],
  [/^model\.layers\.(\d+)\.mlp\.down_proj\.weight$/, 'blk.$1.ffn_down.weight'],
];

function ggufName(hfName: string): string {
  for (const [re, to] of GGUF_NAMES) if (re.test(hfName)) return hfName.replace(re, to);
  throw new Error(`no GGUF name for tensor ${hfName}`);
}

function decodeToF32(t: SafetensorsTensor): Float32Array {
  if (t.dtype === 'F32') return new Float32Array(t.data.slice().buffer);
  const halves = new Uint16Array(t.data.slice().buffer);
  const decode = t.dtype === 'F16' ? f16ToF32 : bf16ToF32;
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = decode(halves[i]!);
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
export async function ggufTokenizerMetadata(src: GgufTokenizerSource, vocabSize: number): Promise<GgufMetaEntry[]> {
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
  const meta: GgufMetaEntry[] = [
    ['tokenizer.ggml.model', 'string', 'gpt2'],
    ['tokenizer.ggml.pre', 'string', src.pre],
    ['tokenizer.ggml.tokens', 'string[]', tokens],
    ['tokenizer.ggml.token_type', 'int32[]', types],
    ['tokenizer.ggml.merges', 'string[]', merges],
  ];
  if (src.bos !== undefined) meta.push(['tokenizer.ggml.bos_token_id', 'uint32', src.bos]);
  if (src.eos !== undefined) meta.push(['tokenizer.ggml.eos_token_id', 'uint32', src.eos]);
  meta.push(['tokenizer.ggml.add_bos_token', 'bool', src.addBos ?? false]);
  return meta;
}

export interface GgufWriteOptions {
  name?: string;
  /** Store matrices as Q8_0 instead of the model's own dtype (norms stay F32 either way). */
  quantize?: 'Q8_0';
}

/**
 * Writes `model` as a llama-architecture GGUF that llama.cpp loads: its tensor names, Q/K rows in
 * its RoPE layout, llama.* metadata and a gpt2 tokenizer section. Norms are stored as F32 (llama.cpp's
 * converter does the same); matrices keep the model's dtype unless `quantize` says otherwise.
 */
export async function writeLlamaGguf(file: string, model: RandomLlama, tok: GgufTokenizerSource, options: GgufWriteOptions = {}): Promise<void> {
  const c = model.config;
  const metadata: GgufMetaEntry[] = [
    ['general.architecture', 'string', 'llama'],
    ['general.name', 'string', options.name ?? 'random-llama'],
    ['general.file_type', 'uint32', options.quantize === 'Q8_0' ? 7 : { F32: 0, F16: 1, BF16: 32 }[model.dtype]],
    ['llama.context_length', 'uint32', c.maxContext],
    ['llama.embedding_length', 'uint32', c.hiddenSize],
    ['llama.block_count', 'uint32', c.numLayers],
    ['llama.feed_forward_length', 'uint32', c.intermediateSize],
    ['llama.attention.head_count', 'uint32', c.numHeads],
    ['llama.attention.head_count_kv', 'uint32', c.numKvHeads],
    ['llama.attention.key_length', 'uint32', c.headDim],
    ['llama.attention.value_length', 'uint32', c.headDim],
    ['llama.rope.dimension_count', 'uint32', c.headDim],
    ['llama.rope.freq_base', 'float32', c.ropeTheta],
    ['llama.attention.layer_norm_rms_epsilon', 'float32', c.rmsEps],
    ['llama.vocab_size', 'uint32', c.vocabSize],
    ...(await ggufTokenizerMetadata(tok, c.vocabSize)),
  ];
  const tensors: GgufTensor[] = model.tensors.map((t) => {
    const name = ggufName(t.name);
    const dims = [...t.shape].reverse();
    if (t.shape.length === 1) {
      const data = t.dtype === 'F32' ? t.data : encodeF32(decodeToF32(t));
      return { name, type: 'F32', dims, data };
    }
    let data = t.data;
    let type: GgmlTypeName = t.dtype;
    if (options.quantize === 'Q8_0') {
      data = encodeQ8_0(decodeToF32(t));
      type = 'Q8_0';
    }
    if (/\.attn_q\.weight$/.test(name)) data = permuteRowsForGguf(data, t.shape[0]!, c.numHeads);
    else if (/\.attn_k\.weight$/.test(name)) data = permuteRowsForGguf(data, t.shape[0]!, c.numKvHeads);
    return { name, type, dims, data };
  });
  await writeGguf(file, metadata, tensors);
}
