import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Kernels, Matrix } from '../kernels/api.js';
import type { ModelConfig } from './config.js';
import { dtypeBytes } from './tensor.js';
import type { Weights } from './weights.js';

/** What a calibration (or any per-model artefact) belongs to: the architecture, the shape and the weights. */
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

/**
 * The identity of a loaded model. Unlike the eval store's file fingerprint (src/eval/fingerprint.ts)
 * it hashes what runs, so the same weights read from another path or container agree.
 */
export function modelIdentity(name: string, k: Kernels, c: ModelConfig, w: Weights): ModelIdentity {
  const hash = createHash('sha256');
  const seen = new Set<number>();
  const bytes = (ptr: number, length: number): void => {
    if (seen.has(ptr)) return; // tied classifier
    seen.add(ptr);
    hash.update(k.arena.u8(ptr, length));
  };
  const matrix = (m: Matrix): void => bytes(m.ptr, dtypeBytes(m.dtype, m.rows * m.cols));
  matrix(w.embed);
  for (const L of w.layers) {
    bytes(L.attnNorm, c.hiddenSize * 4);
    bytes(L.ffnNorm, c.hiddenSize * 4);
    for (const m of [L.wq, L.wk, L.wv, L.wo, L.wGate, L.wUp, L.wDown]) matrix(m);
  }
  bytes(w.finalNorm, c.hiddenSize * 4);
  matrix(w.lmHead);
  return {
    name, architecture: c.architecture, numLayers: c.numLayers, hiddenSize: c.hiddenSize, numHeads: c.numHeads,
    numKvHeads: c.numKvHeads, headDim: c.headDim, vocabSize: c.vocabSize, ropeLayout: c.ropeLayout,
    weights: hash.digest('hex'),
  };
}

/** A model's name for messages: its file or folder name without the extension. */
export function modelName(source: string): string {
  return path.basename(source).replace(/\.(gguf|bin|safetensors)$/, '');
}

/** One line naming a model: "ref-6m (llama, 6 layers × 2 KV heads × 64, vocab 8192, weights 3f2a…)". */
export function describeIdentity(m: ModelIdentity): string {
  return `${m.name} (${m.architecture}, ${m.numLayers} layers × ${m.numKvHeads} KV heads × ${m.headDim}, hidden ${m.hiddenSize}, vocab ${m.vocabSize}, weights ${m.weights.slice(0, 12)}…)`;
}
