// Small synthetic checkpoints: the tiny config, llama2.c files and the tokenizers that go with them
// (safetensors and GGUF are written by src/dev/write.ts, shared with the bench).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { encodeF32, GGUF_TYPE, ggufModelMetadata, type GgufKv, type Weights } from '../../src/dev/write.js';
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

export { seededRandom as mulberry32 } from '../../src/util/random.js';

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kvpack-model-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
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
    ...ggufModelMetadata(c, 'tiny'),
    ...tok,
    ['tokenizer.ggml.bos_token_id', T.U32, 1],
    ['tokenizer.ggml.eos_token_id', T.U32, 2],
    ...extra,
  ];
}

// ---- llama2.c ----

/** A llama2.c v0 checkpoint of `config` (llama2.c has no biases; `shared` = tied classifier). */
export function llama2cBytes(c: ModelConfig, w: Weights, shared: boolean): Buffer {
  const head = Buffer.alloc(28);
  [c.hiddenSize, c.intermediateSize, c.numLayers, c.numHeads, c.numKvHeads, shared ? c.vocabSize : -c.vocabSize, c.maxContext].forEach(
    (v, i) => head.writeInt32LE(v, i * 4),
  );
  const get = (n: string) => Buffer.from(encodeF32(w.get(n)!.values));
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
