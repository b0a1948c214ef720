import { ModelFormatError, UnsupportedModelError } from '../errors.js';
import type { RopeLayout, RopeScaling } from '../kernels/rope.js';

export type { RopeLayout, RopeScaling } from '../kernels/rope.js';

export type Architecture = 'llama' | 'mistral' | 'qwen2' | 'qwen3';

/** The shape and numerics of a Llama-family model, whatever file it came from. */
export interface ModelConfig {
  architecture: Architecture;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  /** Trained context length. */
  maxContext: number;
  rmsEps: number;
  /** RoPE base, pairing and frequency scaling (absent: none); src/kernels/rope.ts turns them into a Rope. */
  ropeTheta: number;
  ropeLayout: RopeLayout;
  ropeScaling?: RopeScaling;
  tiedEmbeddings: boolean;
  /** Qwen2-style biases on the q, k and v projections. */
  qkvBias: boolean;
}

/** What a calibration (or any per-model artefact) belongs to: the architecture, the shape and the weights (src/model/identity.ts hashes them). */
export interface ModelIdentity {
  /** For messages: the model's file or folder name. */
  name: string;
  architecture: string;
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  ropeLayout: string;
  /** sha256 of the bytes of every weight as uploaded (the dtype and the row order count: a GGUF's permuted Q/K rows differ). */
  weights: string;
}

/** One line naming a model: "ref-6m (llama, 6 layers × 2 KV heads × 64, vocab 8192, weights 3f2a…)". */
export function describeIdentity(m: ModelIdentity): string {
  return `${m.name} (${m.architecture}, ${m.numLayers} layers × ${m.numKvHeads} KV heads × ${m.headDim}, hidden ${m.hiddenSize}, vocab ${m.vocabSize}, weights ${m.weights.slice(0, 12)}…)`;
}

/** Checks the numbers a forward pass relies on; `file` names the source in the error. */
export function validateConfig(c: ModelConfig, file: string): ModelConfig {
  const positive: (keyof ModelConfig)[] = [
    'hiddenSize', 'intermediateSize', 'numLayers', 'numHeads', 'numKvHeads', 'headDim', 'vocabSize', 'maxContext',
  ];
  for (const key of positive) {
    const v = c[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new ModelFormatError(file, `config field ${key} must be a positive integer, got ${String(v)}`);
    }
  }
  if (c.numHeads % c.numKvHeads !== 0) {
    throw new ModelFormatError(file, `num_attention_heads (${c.numHeads}) is not a multiple of num_key_value_heads (${c.numKvHeads})`);
  }
  if (c.headDim % 2 !== 0) throw new ModelFormatError(file, `head_dim must be even for RoPE, got ${c.headDim}`);
  // wide enough for every released model (eps 1e-12..1e-5, theta 1e4..1e7), narrow enough to catch corruption
  if (!(c.rmsEps >= 1e-12 && c.rmsEps < 1)) throw new ModelFormatError(file, `rms_norm_eps must be in [1e-12, 1), got ${c.rmsEps}`);
  if (!(c.ropeTheta > 1 && c.ropeTheta <= 1e10)) throw new ModelFormatError(file, `rope_theta must be in (1, 1e10], got ${c.ropeTheta}`);
  if (!['llama', 'mistral', 'qwen2', 'qwen3'].includes(c.architecture)) {
    throw new UnsupportedModelError(file, `architecture "${c.architecture}" is not supported (llama, mistral, qwen2, qwen3 are)`);
  }
  return c;
}

/** Qwen3 normalizes each head of q and k (RMSNorm with a learned [headDim] weight) before RoPE. */
export function hasQkNorm(c: ModelConfig): boolean {
  return c.architecture === 'qwen3';
}

/** Bytes of K and V per token across all layers, stored as `bytesPerValue`-byte numbers. */
export function kvBytesPerToken(c: ModelConfig, bytesPerValue = 4): number {
  return 2 * c.numLayers * c.numKvHeads * c.headDim * bytesPerValue;
}
