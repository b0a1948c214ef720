// Writers for small synthetic checkpoints (safetensors, GGUF, llama2.c) and the tokenizers that go with them.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { f32ToF16 } from '../../src/kernels/half.js';
import { expectedShapes } from '../../src/model/checkpoint.js';
import type { ModelConfig } from '../../src/model/config.js';
import { TensorNames as N } from '../../src/model/tensor.js';

export const SHARED = path.resolve('../shared/models');
export const REF6M = path.join(SHARED, 'ref-6m');
export const STORIES = path.join(SHARED, 'stories260K');

/** A tiny random Llama: small enough to write in microseconds, big enough for GQA and Q8_0 rows. */
export const TINY: ModelConfig = {
  architecture: 'llama',
  hiddenSize: 32,
  intermediateSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 8,
  vocabSize: 64,
  maxContext: 128,
  rmsEps: 2 ** -17, // exact in f32, so GGUF's f32 field reads back equal
  ropeTheta: 10000,
  ropeLayout: 'half',
  tiedEmbeddings: false,
  qkvBias: false,
};

import { seededRandom as mulberry32 } from '../../src/util/random.js';

export { mulberry32 };

export interface TestTensor {
  shape: number[];
  values: Float32Array;
}

/** Random weights for every canonical tensor `config` needs, values in [-1, 1). */
export function randomWeights(config: ModelConfig, seed = 1): Map<string, TestTensor> {
  const rand = mulberry32(seed);
  const out = new Map<string, TestTensor>();
  for (const [name, shape] of expectedShapes(config)) {
    const values = new Float32Array(shape.reduce((a, d) => a * d, 1));
    for (let i = 0; i < values.length; i++) values[i] = rand() * 2 - 1;
    out.set(name, { shape, values });
  }
  return out;
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kvpack-model-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- number encodings ----

export function f32Bytes(v: Float32Array): Uint8Array {
  return new Uint8Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
}

export function f16Bytes(v: Float32Array): Uint8Array {
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = f32ToF16(v[i]!);
  return new Uint8Array(out.buffer);
}

/** bfloat16 by truncation (exactness is not the point here, the bytes are). */
export function bf16Bytes(v: Float32Array): Uint8Array {
  const u = new Uint32Array(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
  const out = new Uint16Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = u[i]! >>> 16;
  return new Uint8Array(out.buffer);
}

/** Q8_0: per 32 values an f16 scale max|x|/127 then 32 int8s. */
export function q8_0Bytes(v: Float32Array): Uint8Array {
  const blocks = v.length / 32;
  const out = Buffer.alloc(blocks * 34);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(v[b * 32 + i]!));
    const d = amax / 127;
    out.writeUInt16LE(f32ToF16(d), b * 34);
    for (let i = 0; i < 32; i++) out.writeInt8(d === 0 ? 0 : Math.round(v[b * 32 + i]! / d), b * 34 + 2 + i);
  }
  return out;
}

// ---- safetensors ----

export interface StEntry {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** A safetensors file; the header is padded with spaces to 8 bytes, as the reference writer does. */
export function safetensorsBytes(entries: StEntry[], metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let off = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [off, off + e.data.length] };
    off += e.data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...entries.map((e) => Buffer.from(e.data))]);
}

/** Canonical name → HF name. */
export function hfName(canonical: string): string {
  const global: Record<string, string> = {
    [N.embed]: 'model.embed_tokens.weight',
    [N.finalNorm]: 'model.norm.weight',
    [N.lmHead]: 'lm_head.weight',
  };
  if (global[canonical]) return global[canonical];
  const [, l, part] = /^layers\.(\d+)\.(.+)$/.exec(canonical)!;
  const map: Record<string, string> = {
    wq: 'self_attn.q_proj.weight', wk: 'self_attn.k_proj.weight', wv: 'self_attn.v_proj.weight', wo: 'self_attn.o_proj.weight',
    bq: 'self_attn.q_proj.bias', bk: 'self_attn.k_proj.bias', bv: 'self_attn.v_proj.bias',
    attn_norm: 'input_layernorm.weight', ffn_norm: 'post_attention_layernorm.weight',
    w_gate: 'mlp.gate_proj.weight', w_up: 'mlp.up_proj.weight', w_down: 'mlp.down_proj.weight',
  };
  return `model.layers.${l}.${map[part!]}`;
}

export function hfConfig(c: ModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const arch = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM', qwen2: 'Qwen2ForCausalLM' }[c.architecture];
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
    tie_word_embeddings: c.tiedEmbeddings,
    bos_token_id: 1,
    eos_token_id: 2,
    ...extra,
  };
}

/** The tiny vocabulary both synthetic tokenizers use: three specials, then single characters. */
export function tinyVocab(n: number): string[] {
  const chars = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,!?';
  return ['<unk>', '<s>', '</s>', ...Array.from({ length: n - 3 }, (_, i) => chars[i] ?? `<x${i}>`)];
}

/** A minimal BPE tokenizer.json over tinyVocab (no merges). */
export function tinyTokenizerJson(n: number): string {
  const tokens = tinyVocab(n);
  return JSON.stringify({
    version: '1.0',
    added_tokens: tokens.slice(0, 3).map((content, id) => ({ id, content, special: true, single_word: false, lstrip: false, rstrip: false, normalized: false })),
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    model: { type: 'BPE', vocab: Object.fromEntries(tokens.map((t, i) => [t, i])), merges: [], unk_token: '<unk>' },
  });
}

// ---- GGUF ----

export const GGUF_TYPE = { U8: 0, I8: 1, U16: 2, I16: 3, U32: 4, I32: 5, F32: 6, BOOL: 7, STRING: 8, ARRAY: 9, U64: 10, I64: 11, F64: 12 } as const;
export const GGML = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8, BF16: 30 } as const;

/** A metadata value: `[type, value]`; arrays are `[ARRAY, [elemType, items]]` with items raw values. */
export type GgufKv = [key: string, type: number, value: unknown];

function ggufString(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(b.length));
  return Buffer.concat([len, b]);
}

function ggufValue(type: number, v: unknown): Buffer {
  const b = Buffer.alloc(8);
  switch (type) {
    case 0: b.writeUInt8(v as number); return b.subarray(0, 1);
    case 1: b.writeInt8(v as number); return b.subarray(0, 1);
    case 2: b.writeUInt16LE(v as number); return b.subarray(0, 2);
    case 3: b.writeInt16LE(v as number); return b.subarray(0, 2);
    case 4: b.writeUInt32LE(v as number); return b.subarray(0, 4);
    case 5: b.writeInt32LE(v as number); return b.subarray(0, 4);
    case 6: b.writeFloatLE(v as number); return b.subarray(0, 4);
    case 7: b.writeUInt8(v ? 1 : 0); return b.subarray(0, 1);
    case 8: return ggufString(v as string);
    case 9: {
      const [elemType, items] = v as [number, unknown[]];
      const head = Buffer.alloc(12);
      head.writeUInt32LE(elemType);
      head.writeBigUInt64LE(BigInt(items.length), 4);
      return Buffer.concat([head, ...items.map((x) => ggufValue(elemType, x))]);
    }
    case 10: b.writeBigUInt64LE(BigInt(v as number | bigint)); return b;
    case 11: b.writeBigInt64LE(BigInt(v as number | bigint)); return b;
    case 12: b.writeDoubleLE(v as number); return b;
    default: throw new Error(`fixture: bad GGUF type ${type}`);
  }
}

export interface GgufTensorSpec {
  name: string;
  /** Row-major, outermost first (written reversed, as GGUF wants). */
  shape: number[];
  type: number;
  data: Uint8Array;
}

export function ggufBytes(o: { version?: number; metadata: GgufKv[]; tensors: GgufTensorSpec[]; alignment?: number }): Buffer {
  const align = o.alignment ?? 32;
  const head = Buffer.alloc(24);
  head.write('GGUF', 0, 'latin1');
  head.writeUInt32LE(o.version ?? 3, 4);
  head.writeBigUInt64LE(BigInt(o.tensors.length), 8);
  head.writeBigUInt64LE(BigInt(o.metadata.length), 16);
  const parts: Buffer[] = [head];
  for (const [key, type, value] of o.metadata) {
    const t = Buffer.alloc(4);
    t.writeUInt32LE(type);
    parts.push(ggufString(key), t, ggufValue(type, value));
  }
  let off = 0;
  const offsets: number[] = [];
  for (const t of o.tensors) {
    offsets.push(off);
    off += Math.ceil(t.data.length / align) * align;
  }
  o.tensors.forEach((t, i) => {
    const nd = Buffer.alloc(4);
    nd.writeUInt32LE(t.shape.length);
    const dims = Buffer.alloc(8 * t.shape.length);
    [...t.shape].reverse().forEach((d, j) => dims.writeBigUInt64LE(BigInt(d), 8 * j));
    const tail = Buffer.alloc(12);
    tail.writeUInt32LE(t.type);
    tail.writeBigUInt64LE(BigInt(offsets[i]!), 4);
    parts.push(ggufString(t.name), nd, dims, tail);
  });
  const len = parts.reduce((s, p) => s + p.length, 0);
  parts.push(Buffer.alloc((align - (len % align)) % align));
  for (const t of o.tensors) {
    parts.push(Buffer.from(t.data), Buffer.alloc(Math.ceil(t.data.length / align) * align - t.data.length));
  }
  return Buffer.concat(parts);
}

/** Canonical name → GGUF name. */
export function ggufName(canonical: string): string {
  const global: Record<string, string> = {
    [N.embed]: 'token_embd.weight',
    [N.finalNorm]: 'output_norm.weight',
    [N.lmHead]: 'output.weight',
  };
  if (global[canonical]) return global[canonical];
  const [, l, part] = /^layers\.(\d+)\.(.+)$/.exec(canonical)!;
  const map: Record<string, string> = {
    wq: 'attn_q.weight', wk: 'attn_k.weight', wv: 'attn_v.weight', wo: 'attn_output.weight',
    bq: 'attn_q.bias', bk: 'attn_k.bias', bv: 'attn_v.bias',
    attn_norm: 'attn_norm.weight', ffn_norm: 'ffn_norm.weight',
    w_gate: 'ffn_gate.weight', w_up: 'ffn_up.weight', w_down: 'ffn_down.weight',
  };
  return `blk.${l}.${map[part!]}`;
}

/** Model metadata for `config`, with an SPM ("llama") tokenizer, or a GPT-2 BPE one for qwen2. */
export function ggufMetadata(c: ModelConfig, extra: GgufKv[] = []): GgufKv[] {
  const T = GGUF_TYPE;
  const arch = c.architecture;
  const tokens = tinyVocab(c.vocabSize);
  const tok: GgufKv[] =
    arch === 'qwen2'
      ? [
          ['tokenizer.ggml.model', T.STRING, 'gpt2'],
          ['tokenizer.ggml.pre', T.STRING, 'qwen2'],
          ['tokenizer.ggml.tokens', T.ARRAY, [T.STRING, tokens]],
          ['tokenizer.ggml.token_type', T.ARRAY, [T.I32, tokens.map((_, i) => (i < 3 ? 3 : 1))]],
          ['tokenizer.ggml.merges', T.ARRAY, [T.STRING, ['a b']]],
        ]
      : [
          ['tokenizer.ggml.model', T.STRING, 'llama'],
          ['tokenizer.ggml.tokens', T.ARRAY, [T.STRING, tokens]],
          ['tokenizer.ggml.scores', T.ARRAY, [T.F32, tokens.map((_, i) => -i)]],
          ['tokenizer.ggml.token_type', T.ARRAY, [T.I32, tokens.map((_, i) => (i === 0 ? 2 : i < 3 ? 3 : 1))]],
        ];
  return [
    ['general.architecture', T.STRING, arch],
    ['general.name', T.STRING, 'tiny'],
    [`${arch}.context_length`, T.U32, c.maxContext],
    [`${arch}.embedding_length`, T.U32, c.hiddenSize],
    [`${arch}.block_count`, T.U32, c.numLayers],
    [`${arch}.feed_forward_length`, T.U32, c.intermediateSize],
    [`${arch}.attention.head_count`, T.U32, c.numHeads],
    [`${arch}.attention.head_count_kv`, T.U32, c.numKvHeads],
    [`${arch}.rope.freq_base`, T.F32, c.ropeTheta],
    [`${arch}.attention.layer_norm_rms_epsilon`, T.F32, c.rmsEps],
    ...tok,
    ['tokenizer.ggml.bos_token_id', T.U32, 1],
    ['tokenizer.ggml.eos_token_id', T.U32, 2],
    ...extra,
  ];
}

// ---- llama2.c ----

/** A llama2.c v0 checkpoint of `config` (llama2.c has no biases; `shared` = tied classifier). */
export function llama2cBytes(c: ModelConfig, w: Map<string, TestTensor>, shared: boolean): Buffer {
  const head = Buffer.alloc(28);
  [c.hiddenSize, c.intermediateSize, c.numLayers, c.numHeads, c.numKvHeads, shared ? c.vocabSize : -c.vocabSize, c.maxContext].forEach(
    (v, i) => head.writeInt32LE(v, i * 4),
  );
  const get = (n: string) => Buffer.from(f32Bytes(w.get(n)!.values));
  const layers = (f: (l: number) => string) => Array.from({ length: c.numLayers }, (_, l) => get(f(l)));
  const freqCis = Buffer.alloc(c.maxContext * c.headDim * 4); // real + imag, seq_len * head_size/2 each
  return Buffer.concat([
    head,
    get(N.embed),
    ...layers(N.attnNorm), ...layers(N.wq), ...layers(N.wk), ...layers(N.wv), ...layers(N.wo),
    ...layers(N.ffnNorm), ...layers(N.wGate), ...layers(N.wDown), ...layers(N.wUp),
    get(N.finalNorm),
    freqCis,
    ...(shared ? [] : [get(N.lmHead)]),
  ]);
}

/** llama2.c tokenizer.bin: int32 max_token_length, then per token f32 score, int32 length, bytes. */
export function llama2cTokenizerBytes(tokens: string[]): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4);
  head.writeInt32LE(Math.max(...tokens.map((t) => Buffer.byteLength(t))));
  parts.push(head);
  tokens.forEach((t, i) => {
    const b = Buffer.from(t);
    const h = Buffer.alloc(8);
    h.writeFloatLE(-i, 0);
    h.writeInt32LE(b.length, 4);
    parts.push(h, b);
  });
  return Buffer.concat(parts);
}
