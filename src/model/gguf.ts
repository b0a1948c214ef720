import { ModelFormatError, UnsupportedModelError } from '../errors.js';
import { Gpt2BpeTokenizer } from '../tokenizer/bpe.js';
import { SentencePieceTokenizer } from '../tokenizer/spm.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { Checkpoint } from './checkpoint.js';
import { validateConfig, type Architecture, type ModelConfig } from './config.js';
import {
  buildTokenizer, checkLoadedTensors, checkNoOverlap, checkTiling, checkTokenizerFits, MAX_WHOLE_FILE_BYTES, modelFileSize, readFileRanges, readModelFile,
  readRangeSync,
} from './safetensors.js';
import { own } from '../util/schema.js';
import { BLOCK_FORMATS, blockDTypeOfGgmlId, isBlockDType } from '../kernels/ggml/index.js';
import { ggufRopeScaling } from './rope-scaling.js';
import { dtypeBytes, TensorNames as N, type DType, type RawTensor, type TensorShape } from './tensor.js';
import { toF32 } from './weights.js';

/**
 * GGUF (v2 and v3, little-endian) reader. Layout: magic "GGUF", u32 version, u64 tensor count,
 * u64 metadata count, metadata key/values, tensor infos (name, dims innermost-first, type, offset),
 * padding to `general.alignment`, then tensor data at offsets relative to that point.
 * Every count and length is checked against the bytes left before anything is allocated.
 */

export type GgufValue = number | bigint | boolean | string | GgufValue[];

interface GgufTensorInfo {
  /** Name in the file, e.g. `blk.0.attn_q.weight`. */
  name: string;
  /** Row-major, outermost first (GGUF stores dims innermost first; these are reversed). */
  shape: number[];
  ggmlType: number;
  /** Byte offset from the start of the data section. */
  offset: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: RawTensor[];
  /** Absolute byte offset of the data section. */
  dataOffset: number;
}

const MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const MAX_ARRAY_DEPTH = 8;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;

/** ggml type ids kvpack reads: floats, and the block formats of src/kernels/ggml. */
const dtypeOfGgmlId = (id: number): DType | undefined => ({ 0: 'f32', 1: 'f16', 30: 'bf16' } as Record<number, DType>)[id] ?? blockDTypeOfGgmlId(id);
/** Names of the ggml types kvpack does not read, for the unsupported-type message. */
const GGML_TYPE_NAMES: Record<number, string> = {
  9: 'Q8_1', 15: 'Q8_K', 16: 'IQ2_XXS', 17: 'IQ2_XS', 18: 'IQ3_XXS', 19: 'IQ1_S', 21: 'IQ3_S',
  22: 'IQ2_S', 24: 'I8', 25: 'I16', 26: 'I32', 27: 'I64', 28: 'F64', 29: 'IQ1_M',
};

/** Metadata value type ids → fixed byte size (0 for string/array, whose size is read). */
const VALUE_SIZES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 0, 9: 0, 10: 8, 11: 8, 12: 8 };
/** The fewest bytes one value of each type can take, to bound array counts: a string is at least its u64 length, an array its type and count. */
const MIN_VALUE_BYTES = (type: number): number => (type === 8 ? 8 : type === 9 ? 12 : VALUE_SIZES[type]!);

/** A name read from the file, fit for a message: control bytes escaped, long runs cut (corrupt lengths swallow data). */
function printable(name: string): string {
  const cut = name.length > 80 ? `${name.slice(0, 80)}…` : name;
  return /[\u0000-\u001f\u007f-\u009f\ufffd]/.test(cut) ? JSON.stringify(cut) : cut;
}

/** Thrown inside the parser when a header outruns the prefix read so far (not the file): read more and retry. */
class NeedMoreBytes {}

class Reader {
  pos = 0;
  private readonly view: DataView;
  private readonly decoder = new TextDecoder('utf-8');
  /** `buf` is the file or a prefix of it; `fileSize` bounds every length and count. */
  constructor(readonly buf: Uint8Array, readonly fileSize: number, readonly file: string) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  /** Bytes left in the file (not just in the prefix). */
  get left(): number {
    return this.fileSize - this.pos;
  }
  need(n: number, what: string): void {
    if (n > this.left) {
      throw new ModelFormatError(this.file, `${what} at byte ${this.pos} needs ${n} bytes but the file ends ${this.left} bytes later (truncated?)`);
    }
    if (this.pos + n > this.buf.length) throw new NeedMoreBytes();
  }
  u32(what: string): number {
    this.need(4, what);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A u64 as a number; values past 2^53 are returned as bigint only through `value`, here they are an error. */
  u64(what: string): number {
    this.need(8, what);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ModelFormatError(this.file, `${what} is ${v}, far larger than the file`);
    return Number(v);
  }
  /** A count of items that each take at least `minBytes`, bounded by what is left of the file. */
  count(what: string, minBytes: number): number {
    const at = this.pos;
    const n = this.u64(what);
    if (n * minBytes > this.left) {
      throw new ModelFormatError(this.file, `${what} ${n} at byte ${at} is impossible: only ${this.left} bytes remain (truncated or corrupt file)`);
    }
    return n;
  }
  string(what: string): string {
    const at = this.pos;
    const n = this.u64(`length of ${what}`);
    if (n > this.left) {
      throw new ModelFormatError(this.file, `length ${n} of ${what} at byte ${at} runs past the end of the file (${this.left} bytes remain)`);
    }
    this.need(n, what);
    const s = this.decoder.decode(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  value(type: number, what: string, depth = 0): GgufValue {
    const v = this.view;
    const p = this.pos;
    const size = VALUE_SIZES[type];
    if (size === undefined) throw new ModelFormatError(this.file, `${what} has unknown value type ${type}`);
    if (size > 0) this.need(size, what);
    switch (type) {
      case 0: this.pos += 1; return v.getUint8(p);
      case 1: this.pos += 1; return v.getInt8(p);
      case 2: this.pos += 2; return v.getUint16(p, true);
      case 3: this.pos += 2; return v.getInt16(p, true);
      case 4: this.pos += 4; return v.getUint32(p, true);
      case 5: this.pos += 4; return v.getInt32(p, true);
      case 6: this.pos += 4; return v.getFloat32(p, true);
      case 7: this.pos += 1; return v.getUint8(p) !== 0;
      case 8: return this.string(what);
      case 9: {
        if (depth >= MAX_ARRAY_DEPTH) throw new ModelFormatError(this.file, `${what} nests arrays more than ${MAX_ARRAY_DEPTH} deep`);
        const elemType = this.u32(`element type of ${what}`);
        if (VALUE_SIZES[elemType] === undefined) throw new ModelFormatError(this.file, `${what} has unknown element type ${elemType}`);
        const n = this.count(`element count of ${what}`, MIN_VALUE_BYTES(elemType));
        const out: GgufValue[] = new Array<GgufValue>(n);
        for (let i = 0; i < n; i++) out[i] = this.value(elemType, what, depth + 1);
        return out;
      }
      case 10: case 11: {
        this.pos += 8;
        const big = type === 10 ? v.getBigUint64(p, true) : v.getBigInt64(p, true);
        const small = Number(big);
        return Number.isSafeInteger(small) ? small : big;
      }
      default: this.pos += 8; return v.getFloat64(p, true); // 12: f64
    }
  }
}

interface GgufLayout {
  version: number;
  metadata: Map<string, GgufValue>;
  /** Tensors with their data range as absolute file offsets. */
  tensors: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[];
  dataOffset: number;
}

/**
 * Checks a GGUF header and returns where each tensor lies. `head` is the file or a prefix of it
 * (NeedMoreBytes when the header runs past the prefix); every range is checked against `fileSize`.
 */
function ggufLayout(head: Uint8Array, fileSize: number, file: string): GgufLayout {
  const r = new Reader(head, fileSize, file);
  if (fileSize < 4 || r.u32('magic') !== MAGIC) {
    throw new ModelFormatError(file, 'bad magic: not a GGUF file (expected "GGUF" in the first 4 bytes)');
  }
  const version = r.u32('version');
  if (version !== 2 && version !== 3) {
    // A byte-swapped version is how big-endian GGUF files look from here.
    const hint = version > 0xffff ? ' (a big-endian GGUF file?)' : version === 1 ? ' (GGUF v1 is obsolete; re-convert the model)' : '';
    throw new UnsupportedModelError(file, `bad GGUF version ${version}; kvpack reads versions 2 and 3${hint}`);
  }
  const nTensors = r.count('tensor count', 24); // name length 8 + n_dims 4 + type 4 + offset 8
  const nKv = r.count('metadata count', 13); // key length 8 + type 4 + at least 1 byte of value

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = r.string(`metadata key #${i}`);
    const shown = printable(key);
    const type = r.u32(`type of metadata ${shown}`);
    const value = r.value(type, `metadata ${shown}`);
    if (metadata.has(key)) throw new ModelFormatError(file, `metadata key ${shown} appears twice`);
    metadata.set(key, value);
  }

  const infos: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = r.string(`name of tensor #${i}`);
    const shown = printable(name);
    const nDims = r.u32(`dimension count of tensor ${shown}`);
    if (nDims > MAX_DIMS) throw new ModelFormatError(file, `tensor ${shown} has ${nDims} dimensions (at most ${MAX_DIMS})`);
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(r.u64(`dimension ${d} of tensor ${shown}`));
    const ggmlType = r.u32(`type of tensor ${shown}`);
    const offset = r.u64(`data offset of tensor ${shown}`);
    infos.push({ name, shape: dims.reverse(), ggmlType, offset });
  }

  const alignValue = metadata.get('general.alignment') ?? 32;
  // the GGUF spec asks for a multiple of 8; ggml's padding arithmetic needs a power of two
  if (typeof alignValue !== 'number' || !(alignValue >= 8) || !Number.isInteger(Math.log2(alignValue))) {
    throw new ModelFormatError(file, `general.alignment must be a power of two ≥ 8, got ${String(alignValue)}`);
  }
  const dataOffset = Math.ceil(r.pos / alignValue) * alignValue;
  const dataLen = fileSize - dataOffset;

  const seen = new Set<string>();
  const ranges: [number, number, string][] = [];
  const tensors = infos.map(({ name, shape, ggmlType, offset }) => {
    const shown = printable(name);
    if (seen.has(name)) throw new ModelFormatError(file, `tensor ${shown} appears twice`);
    seen.add(name);
    const dtype = dtypeOfGgmlId(ggmlType);
    if (!dtype) {
      const typeName = GGML_TYPE_NAMES[ggmlType] ?? 'unknown';
      const known = ['F32', 'F16', 'BF16', ...Object.values(BLOCK_FORMATS).map((f) => f.name)].join(', ');
      throw new UnsupportedModelError(file, `tensor ${shown} has type ${typeName} (${ggmlType}); kvpack reads ${known}`);
    }
    if (isBlockDType(dtype) && (shape[shape.length - 1] ?? 1) % BLOCK_FORMATS[dtype].blockValues !== 0) {
      const f = BLOCK_FORMATS[dtype];
      throw new ModelFormatError(file, `tensor ${shown} is ${f.name} but its rows (${shape[shape.length - 1]}) are not a multiple of ${f.blockValues}`);
    }
    if (offset % alignValue !== 0) throw new ModelFormatError(file, `tensor ${shown} data offset ${offset} is not a multiple of the alignment ${alignValue}`);
    // Bound the element count by the file before multiplying further, so a corrupt dim cannot overflow.
    let count = 1;
    for (const d of shape) {
      count *= d;
      if (count > fileSize) break;
    }
    const bytes = dtypeBytes(dtype, count);
    if (dataLen < 0 || offset + bytes > dataLen) {
      throw new ModelFormatError(
        file,
        `tensor ${shown} data [${offset}, ${offset + bytes}) runs past the end of the file (data section holds ${Math.max(dataLen, 0)} bytes): truncated?`,
      );
    }
    ranges.push([offset, offset + bytes, shown]);
    return { name, dtype, shape, begin: dataOffset + offset, end: dataOffset + offset + bytes };
  });
  checkNoOverlap(ranges, file);
  checkTiling(ranges, dataLen, alignValue, file);
  return { version, metadata, tensors, dataOffset };
}

/** Parses a GGUF file held whole in `buf`; tensors are views into it. */
export function parseGguf(buf: Uint8Array, file: string): GgufFile {
  const { tensors, ...rest } = ggufLayout(buf, buf.length, file);
  return { ...rest, tensors: tensors.map(({ name, dtype, shape, begin, end }) => ({ name, dtype, shape, data: buf.subarray(begin, end) })) };
}

/**
 * Reads a GGUF file without holding it in one Buffer: a prefix (`firstRead` bytes, growing until the
 * header fits) now, each tensor's bytes from the file whenever its `data` is read.
 */
export async function readGgufInParts(file: string, firstRead = 16 * 2 ** 20): Promise<GgufFile> {
  const { tensors, ...rest } = await readGgufLayout(file, firstRead);
  return {
    ...rest,
    tensors: tensors.map(({ name, dtype, shape, begin, end }) => ({
      name, dtype, shape,
      get data() {
        return readRangeSync(file, begin, end);
      },
    })),
  };
}

/** The header of a GGUF file: a prefix (`firstRead` bytes, growing until the header fits) is read, no tensor data. */
async function readGgufLayout(file: string, firstRead: number): Promise<GgufLayout> {
  const size = await modelFileSize(file);
  for (let prefix = Math.min(size, firstRead); ; prefix = Math.min(size, prefix * 8, MAX_WHOLE_FILE_BYTES)) {
    const [head] = await readFileRanges(file, [[0, prefix]]);
    try {
      return ggufLayout(head!, size, file);
    } catch (e) {
      if (!(e instanceof NeedMoreBytes)) throw e;
      if (prefix >= Math.min(size, MAX_WHOLE_FILE_BYTES)) throw new UnsupportedModelError(file, 'GGUF header is larger than 2 GiB');
    }
  }
}

/**
 * A GGUF file's config and the bytes its tensors take, from its header alone: of the tensor data only
 * rope_freqs (a few hundred bytes, when present) is read.
 */
export async function readGgufHeader(file: string): Promise<{ config: ModelConfig; tensorBytes: number; tensors: TensorShape[] }> {
  const layout = await readGgufLayout(file, 2 ** 20);
  const freqs = layout.tensors.find((t) => t.name === ROPE_FREQS);
  const ropeFreqs = freqs && { ...freqs, data: readRangeSync(file, freqs.begin, freqs.end) };
  const tensors = canonicalTensors(layout.tensors);
  const config = ggufConfig(new Meta(layout.metadata, file), tensors, ropeFreqs, file);
  return { config, tensorBytes: layout.tensors.reduce((sum, t) => sum + t.end - t.begin, 0), tensors: [...tensors.values()] };
}

const ARCHS: Record<string, Architecture> = { llama: 'llama', mistral: 'mistral', qwen2: 'qwen2', qwen3: 'qwen3' };
/** Llama 3.1-style RoPE scaling: a factor per rotated pair. */
const ROPE_FREQS = 'rope_freqs.weight';

/** Reads one metadata value of the expected kind, or throws a ModelFormatError naming the key. */
class Meta {
  constructor(readonly m: Map<string, GgufValue>, readonly file: string) {}
  has(key: string): boolean {
    return this.m.has(key);
  }
  num(key: string, fallback?: number): number {
    const v = this.m.get(key);
    if (v === undefined) {
      if (fallback !== undefined) return fallback;
      throw new ModelFormatError(this.file, `metadata ${key} is missing`);
    }
    if (Array.isArray(v)) throw new UnsupportedModelError(this.file, `metadata ${key} is per-layer (an array); kvpack needs one value`);
    if (typeof v !== 'number') throw new ModelFormatError(this.file, `metadata ${key} must be a number, got ${typeof v}`);
    return v;
  }
  optId(key: string, vocab: number): number | undefined {
    const v = this.m.get(key);
    // Out-of-range ids (llama.cpp writes 0xFFFFFFFF for "none") mean the token is absent.
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < vocab ? v : undefined;
  }
  str(key: string, fallback?: string): string {
    const v = this.m.get(key);
    if (v === undefined && fallback !== undefined) return fallback;
    if (typeof v !== 'string') throw new ModelFormatError(this.file, `metadata ${key} must be a string`);
    return v;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.m.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw new ModelFormatError(this.file, `metadata ${key} must be a boolean`);
    return v;
  }
  strings(key: string, optional = false): string[] | undefined {
    const v = this.m.get(key);
    if (v === undefined && optional) return undefined;
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
      throw new ModelFormatError(this.file, `metadata ${key} must be an array of strings`);
    }
    return v as string[];
  }
  numbers(key: string, length: number): number[] | undefined {
    const v = this.m.get(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.length !== length || !v.every((x) => typeof x === 'number')) {
      throw new ModelFormatError(this.file, `metadata ${key} must be an array of ${length} numbers`);
    }
    return v as number[];
  }
}

/** GGUF names of the tensors outside the layers, and the canonical name each maps to. */
export const GGUF_GLOBAL_NAMES: Record<string, string> = {
  'token_embd.weight': N.embed,
  'output_norm.weight': N.finalNorm,
  'output.weight': N.lmHead,
};
/** GGUF per-layer suffixes (after `blk.N.`) and the canonical name each maps to. */
export const GGUF_LAYER_NAMES: Record<string, (l: number) => string> = {
  'attn_q.weight': N.wq, 'attn_k.weight': N.wk, 'attn_v.weight': N.wv, 'attn_output.weight': N.wo,
  'attn_q.bias': N.bq, 'attn_k.bias': N.bk, 'attn_v.bias': N.bv,
  'attn_q_norm.weight': N.qNorm, 'attn_k_norm.weight': N.kNorm,
  'attn_norm.weight': N.attnNorm, 'ffn_norm.weight': N.ffnNorm,
  'ffn_gate.weight': N.wGate, 'ffn_up.weight': N.wUp, 'ffn_down.weight': N.wDown,
};

/** GGUF tensor names → canonical names. */
function canonicalName(name: string): string | undefined {
  if (Object.hasOwn(GGUF_GLOBAL_NAMES, name)) return GGUF_GLOBAL_NAMES[name];
  const m = /^blk\.(\d+)\.(\w+\.(?:weight|bias))$/.exec(name);
  return m ? own(GGUF_LAYER_NAMES, m[2]!)?.(Number(m[1])) : undefined;
}

/** Builds a checked Checkpoint from a GGUF file held whole in `buf`. */
export function ggufCheckpoint(buf: Uint8Array, file: string): Checkpoint {
  return checkpointOf(parseGguf(buf, file), file);
}

function checkpointOf(gguf: GgufFile, file: string): Checkpoint {
  const meta = new Meta(gguf.metadata, file);
  const tensors = canonicalTensors(gguf.tensors);
  const config = ggufConfig(meta, tensors, gguf.tensors.find((t) => t.name === ROPE_FREQS), file);
  checkLoadedTensors(config, tensors, file);
  const tokens = meta.has('tokenizer.ggml.tokens') ? meta.strings('tokenizer.ggml.tokens')! : undefined;
  const tokenizer = ggufTokenizer(meta, tokens, file);
  checkTokenizerFits(tokenizer, config, file);
  return { format: 'gguf', source: file, config, tensors, tokenizer };
}

/** The file's tensors under canonical names (others are left out). */
function canonicalTensors<T extends { name: string }>(list: readonly T[]): Map<string, T> {
  const tensors = new Map<string, T>();
  for (const t of list) {
    const canonical = canonicalName(t.name);
    if (canonical) tensors.set(canonical, t);
  }
  return tensors;
}

/** The model config the metadata describes; of the tensors only names and shapes are read, and rope_freqs. */
function ggufConfig(meta: Meta, tensors: Map<string, { shape: number[] }>, ropeFreqs: RawTensor | undefined, file: string): ModelConfig {
  const archName = meta.str('general.architecture');
  const architecture = ARCHS[archName];
  if (!architecture) {
    throw new UnsupportedModelError(file, `architecture ${JSON.stringify(archName)} is not supported (supported: ${Object.keys(ARCHS).join(', ')})`);
  }

  const a = (k: string) => `${archName}.${k}`;
  const tokens = meta.has('tokenizer.ggml.tokens') ? meta.strings('tokenizer.ggml.tokens')! : undefined;
  const hiddenSize = meta.num(a('embedding_length'));
  const numHeads = meta.num(a('attention.head_count'));
  const headDim = meta.num(a('attention.key_length'), hiddenSize / numHeads);
  const rotDims = meta.num(a('rope.dimension_count'), headDim);
  if (rotDims !== headDim) {
    throw new UnsupportedModelError(file, `partial RoPE (${rotDims} of ${headDim} head dimensions) is not supported`);
  }
  if (ropeFreqs && (ropeFreqs.shape.length !== 1 || ropeFreqs.shape[0] !== rotDims / 2)) {
    throw new ModelFormatError(file, `rope_freqs.weight has shape [${ropeFreqs.shape.join(', ')}] but RoPE turns ${rotDims / 2} pairs`);
  }
  const maxContext = meta.num(a('context_length'));
  const ropeScaling = ggufRopeScaling(
    meta.has(a('rope.scaling.type')) ? meta.str(a('rope.scaling.type')) : undefined,
    (key) => (meta.has(a(key)) ? meta.num(a(key)) : undefined),
    ropeFreqs && toF32(ropeFreqs, file),
    maxContext,
    file,
  );
  return validateConfig(
    {
      architecture,
      hiddenSize,
      intermediateSize: meta.num(a('feed_forward_length')),
      numLayers: meta.num(a('block_count')),
      numHeads,
      numKvHeads: meta.num(a('attention.head_count_kv'), numHeads),
      headDim,
      vocabSize: meta.num(a('vocab_size'), tokens?.length ?? tensors.get(N.embed)?.shape[0] ?? 0),
      maxContext,
      rmsEps: meta.num(a('attention.layer_norm_rms_epsilon')),
      ropeTheta: meta.num(a('rope.freq_base'), 10000),
      ...(ropeScaling.kind === 'none' ? {} : { ropeScaling }),
      // llama.cpp's converter permutes llama Q/K rows so pairs are adjacent; qwen2 and qwen3 keep HF's layout.
      ropeLayout: architecture === 'qwen2' || architecture === 'qwen3' ? 'half' : 'interleaved',
      tiedEmbeddings: !tensors.has(N.lmHead),
      qkvBias: architecture === 'qwen2',
    },
    file,
  );
}

function ggufTokenizer(meta: Meta, tokens: string[] | undefined, file: string): Tokenizer {
  if (!meta.has('tokenizer.ggml.model')) throw new ModelFormatError(file, 'has no embedded tokenizer (tokenizer.ggml.model is missing)');
  const model = meta.str('tokenizer.ggml.model');
  if (model !== 'llama' && model !== 'gpt2') {
    throw new UnsupportedModelError(file, `tokenizer model ${JSON.stringify(model)} is not supported (llama, gpt2 are)`);
  }
  if (!tokens) throw new ModelFormatError(file, 'metadata tokenizer.ggml.tokens is missing');
  const n = tokens.length;
  const bos = meta.optId('tokenizer.ggml.bos_token_id', n);
  // Generation stops at any of these; newer files name an end-of-turn token apart from EOS.
  const eos = [...new Set(['eos', 'eot', 'eom'].map((k) => meta.optId(`tokenizer.ggml.${k}_token_id`, n)))].filter(
    (x): x is number => x !== undefined,
  );
  const types = meta.numbers('tokenizer.ggml.token_type', n);
  if (model === 'llama') {
    const scores = meta.numbers('tokenizer.ggml.scores', n) ?? new Array<number>(n).fill(0);
    const addBos = meta.bool('tokenizer.ggml.add_bos_token', true);
    const addSpacePrefix = meta.bool('tokenizer.ggml.add_space_prefix', true);
    return buildTokenizer(file, () => new SentencePieceTokenizer({ tokens, scores, types, bos, eos, addBos, addSpacePrefix, file }));
  }
  const merges = meta.strings('tokenizer.ggml.merges')!;
  const addBos = meta.bool('tokenizer.ggml.add_bos_token', false);
  const pre = meta.str('tokenizer.ggml.pre', 'default');
  return buildTokenizer(file, () => new Gpt2BpeTokenizer({ tokens, merges, types, bos, eos, addBos, pre, file }));
}

/**
 * Loads a .gguf file: read whole when it fits in one Buffer; when it does not, each tensor is read
 * when its data is asked for (once, by the upload into kernel memory), so a model as large as the
 * machine's memory is never held twice.
 */
export async function loadGguf(file: string): Promise<Checkpoint> {
  if ((await modelFileSize(file)) > MAX_WHOLE_FILE_BYTES) return checkpointOf(await readGgufInParts(file), file);
  return ggufCheckpoint(await readModelFile(file), file);
}
