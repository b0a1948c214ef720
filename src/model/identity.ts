import { createHash } from 'node:crypto';
import path from 'node:path';
import type { Kernels, Matrix } from '../kernels/api.js';
import type { ModelConfig } from './config.js';
import { dtypeBytes } from './tensor.js';
import type { Weights } from './weights.js';
import type { ModelIdentity } from '../cache/quant/calibfile.js';

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
