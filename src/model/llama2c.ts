import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ModelFormatError, UnsupportedModelError } from '../errors.js';
import { readLlama2cTokenizer } from '../tokenizer/llama2c.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import type { Checkpoint } from './checkpoint.js';
import { validateConfig, type ModelConfig } from './config.js';
import { checkLoadedTensors, checkTokenizerFits, readModelFile, tokenizerError } from './safetensors.js';
import { TensorNames as N, type RawTensor } from './tensor.js';

/**
 * llama2.c "v0" checkpoints (run.c's format): seven int32s (dim, hidden_dim, n_layers, n_heads,
 * n_kv_heads, vocab_size, seq_len; a negative vocab_size means the classifier is not shared with the
 * embedding), then f32 arrays in run.c's order. The file size must match the header exactly.
 */

const HEADER_BYTES = 7 * 4;
/** llama2.c's later export versions start with this magic ("ak42" little-endian). */
const LLAMA2C_MAGIC = 0x616b3432;

/** Parses a llama2.c checkpoint held in `buf` into a config and canonical tensors (views into buf). */
export function parseLlama2c(buf: Uint8Array, file: string): { config: ModelConfig; tensors: Map<string, RawTensor> } {
  if (buf.length < HEADER_BYTES) {
    throw new ModelFormatError(file, `file is ${buf.length} bytes, too short for a llama2.c header (${HEADER_BYTES} bytes)`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (view.getUint32(0, true) === LLAMA2C_MAGIC) {
    throw new UnsupportedModelError(file, 'is a llama2.c v1/v2 export; kvpack reads the legacy v0 format (export with --version 0)');
  }
  const h = Array.from({ length: 7 }, (_, i) => view.getInt32(i * 4, true));
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = h as [number, number, number, number, number, number, number];
  const vocab = Math.abs(vocabRaw);
  const names = ['dim', 'hidden_dim', 'n_layers', 'n_heads', 'n_kv_heads', 'vocab_size', 'seq_len'];
  [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen].forEach((v, i) => {
    if (!(v > 0)) throw new ModelFormatError(file, `header field ${names[i]} is ${h[i]}; not a llama2.c checkpoint?`);
  });
  if (dim % nHeads !== 0 || nHeads % nKvHeads !== 0) {
    throw new ModelFormatError(file, `header dim ${dim}, n_heads ${nHeads}, n_kv_heads ${nKvHeads} do not divide evenly`);
  }
  const headSize = dim / nHeads;
  const kvDim = nKvHeads * headSize;
  const shared = vocabRaw > 0;

  // The header bounds nothing by itself, so the size it implies is computed (in floating point, which
  // stays exact enough to disagree with any real file size) before anything is allocated per layer.
  const perLayerFloats = 2 * dim + 2 * dim * dim + 2 * kvDim * dim + 3 * dim * hiddenDim;
  const floats = vocab * dim * (shared ? 1 : 2) + nLayers * perLayerFloats + dim + seqLen * headSize;
  const expected = HEADER_BYTES + 4 * floats;
  if (expected !== buf.length) {
    throw new ModelFormatError(
      file,
      `file is ${buf.length} bytes but its header (dim ${dim}, hidden ${hiddenDim}, layers ${nLayers}, vocab ${vocabRaw}) implies ${expected}: truncated or not a llama2.c v0 checkpoint`,
    );
  }

  // run.c's order; freq_cis_real/imag (seq_len * head_size/2 each) are skipped: RoPE is recomputed.
  const layout: [string | null, number[]][] = [[N.embed, [vocab, dim]]];
  const perLayer = (name: (l: number) => string, shape: number[]) => {
    for (let l = 0; l < nLayers; l++) layout.push([name(l), shape]);
  };
  perLayer(N.attnNorm, [dim]);
  perLayer(N.wq, [dim, dim]);
  perLayer(N.wk, [kvDim, dim]);
  perLayer(N.wv, [kvDim, dim]);
  perLayer(N.wo, [dim, dim]);
  perLayer(N.ffnNorm, [dim]);
  perLayer(N.wGate, [hiddenDim, dim]); // w1
  perLayer(N.wDown, [dim, hiddenDim]); // w2
  perLayer(N.wUp, [hiddenDim, dim]); // w3
  layout.push([N.finalNorm, [dim]]);
  layout.push([null, [seqLen * headSize]]);
  if (!shared) layout.push([N.lmHead, [vocab, dim]]);
  const tensors = new Map<string, RawTensor>();
  let pos = HEADER_BYTES;
  for (const [name, shape] of layout) {
    const bytes = 4 * shape.reduce((a, d) => a * d, 1);
    if (name) tensors.set(name, { name, dtype: 'f32', shape, data: buf.subarray(pos, pos + bytes) });
    pos += bytes;
  }
  const config = validateConfig(
    {
      architecture: 'llama',
      hiddenSize: dim,
      intermediateSize: hiddenDim,
      numLayers: nLayers,
      numHeads: nHeads,
      numKvHeads: nKvHeads,
      headDim: headSize,
      vocabSize: vocab,
      maxContext: seqLen,
      rmsEps: 1e-5,
      ropeTheta: 10000,
      ropeLayout: 'interleaved',
      tiedEmbeddings: shared,
      qkvBias: false,
    },
    file,
  );
  checkLoadedTensors(config, tensors, file);
  return { config, tensors };
}

/** The tokenizer beside a checkpoint: `tok{vocab}.bin` (as stories260K ships) or `tokenizer.bin`. */
export async function findLlama2cTokenizer(file: string, vocabSize: number): Promise<string> {
  const dir = path.dirname(file);
  const candidates = [path.join(dir, `tok${vocabSize}.bin`), path.join(dir, 'tokenizer.bin')];
  for (const c of candidates) {
    try {
      await fsp.access(c);
      return c;
    } catch {
      // try the next name
    }
  }
  throw new ModelFormatError(
    file,
    `no tokenizer found beside it (looked for ${candidates.map((c) => path.basename(c)).join(', ')}); pass the tokenizer file explicitly`,
  );
}

/** Loads a llama2.c checkpoint and its tokenizer (`options.tokenizer`, or found beside the file). */
export async function loadLlama2c(file: string, options: { tokenizer?: string } = {}): Promise<Checkpoint> {
  const { config, tensors } = parseLlama2c(await readModelFile(file), file);
  const tokFile = options.tokenizer ?? (await findLlama2cTokenizer(file, config.vocabSize));
  let tokenizer: Tokenizer;
  try {
    tokenizer = await readLlama2cTokenizer(tokFile, config.vocabSize);
  } catch (e) {
    throw tokenizerError(e, tokFile);
  }
  checkTokenizerFits(tokenizer, config, tokFile);
  return { format: 'llama2c', source: file, config, tensors, tokenizer };
}
