import { ModelFormatError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { hasQkNorm, type ModelConfig } from './config.js';
import { TensorNames as N, type RawTensor } from './tensor.js';

export type CheckpointFormat = 'hf' | 'gguf' | 'llama2c';

/** What every loader returns: a config, the tensors under canonical names, and the tokenizer that travels with them. */
export interface Checkpoint {
  format: CheckpointFormat;
  /** The file or directory it was read from (for messages and fingerprints). */
  source: string;
  config: ModelConfig;
  tensors: Map<string, RawTensor>;
  tokenizer: Tokenizer;
}

/** The shape each canonical tensor must have for `config`. */
export function expectedShapes(c: ModelConfig): Map<string, number[]> {
  const q = c.numHeads * c.headDim;
  const kv = c.numKvHeads * c.headDim;
  const m = new Map<string, number[]>();
  m.set(N.embed, [c.vocabSize, c.hiddenSize]);
  m.set(N.finalNorm, [c.hiddenSize]);
  if (!c.tiedEmbeddings) m.set(N.lmHead, [c.vocabSize, c.hiddenSize]);
  for (let l = 0; l < c.numLayers; l++) {
    m.set(N.attnNorm(l), [c.hiddenSize]);
    m.set(N.wq(l), [q, c.hiddenSize]);
    m.set(N.wk(l), [kv, c.hiddenSize]);
    m.set(N.wv(l), [kv, c.hiddenSize]);
    m.set(N.wo(l), [c.hiddenSize, q]);
    if (hasQkNorm(c)) {
      m.set(N.qNorm(l), [c.headDim]);
      m.set(N.kNorm(l), [c.headDim]);
    }
    if (c.qkvBias) {
      m.set(N.bq(l), [q]);
      m.set(N.bk(l), [kv]);
      m.set(N.bv(l), [kv]);
    }
    m.set(N.ffnNorm(l), [c.hiddenSize]);
    m.set(N.wGate(l), [c.intermediateSize, c.hiddenSize]);
    m.set(N.wUp(l), [c.intermediateSize, c.hiddenSize]);
    m.set(N.wDown(l), [c.hiddenSize, c.intermediateSize]);
  }
  return m;
}

/** Every tensor the config needs is present with the right shape; names the first one that is not. */
export function checkTensors(c: ModelConfig, tensors: Map<string, RawTensor>, file: string): void {
  for (const [name, shape] of expectedShapes(c)) {
    const t = tensors.get(name);
    if (!t) throw new ModelFormatError(file, `missing tensor ${name}`);
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFormatError(
        file,
        `tensor ${t.name} has shape [${t.shape.join(', ')}] but the config implies [${shape.join(', ')}]`,
      );
    }
  }
}
