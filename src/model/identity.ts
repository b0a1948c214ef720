import { createHash } from 'node:crypto';
import type { Kernels, Matrix } from '../kernels/api.js';
import type { ModelConfig } from './config.js';
import { dtypeBytes } from './tensor.js';
import type { Weights } from './weights.js';
import type { ModelIdentity } from './config.js';

/**
 * The identity of a loaded model. Unlike the eval store's file fingerprint (src/eval/fingerprint.ts)
 * it hashes what runs, so the same weights read from another path or container agree.
 */
export function modelIdentity(name: string, c: ModelConfig, w: Weights): ModelIdentity {
  const hash = createHash('sha256');
  const vector = (k: Kernels, ptr: number): void => void hash.update(k.arena.u8(ptr, c.hiddenSize * 4));
  const matrix = (k: Kernels, m: Matrix): void => void hash.update(k.arena.u8(m.ptr, dtypeBytes(m.dtype, m.rows * m.cols)));
  // the first group's memory holds the embedding and classifier; each group its own layers
  const first = w.groups.first.kernels;
  matrix(first, w.embed);
  for (const g of w.groups.list) {
    for (const L of g.layers) {
      vector(g.kernels, L.attnNorm);
      vector(g.kernels, L.ffnNorm);
      for (const m of [L.wq, L.wk, L.wv, L.wo, L.wGate, L.wUp, L.wDown]) matrix(g.kernels, m);
    }
  }
  vector(first, w.finalNorm);
  if (w.lmHead.ptr !== w.embed.ptr) matrix(first, w.lmHead); // a tied classifier is hashed once
  return {
    name, architecture: c.architecture, numLayers: c.numLayers, hiddenSize: c.hiddenSize, numHeads: c.numHeads,
    numKvHeads: c.numKvHeads, headDim: c.headDim, vocabSize: c.vocabSize, ropeLayout: c.ropeLayout,
    weights: hash.digest('hex'),
  };
}

/**
 * A model's name: its file or folder name without the checkpoint extension, as messages, the server's
 * model id, calibration files and reports call it (a path from another system's separators included).
 */
export function modelName(source: string): string {
  const base = source.replace(/\\/g, '/').replace(/\/+$/, '').split('/').pop()!;
  return base.replace(/\.(gguf|bin|safetensors)$/, '');
}
