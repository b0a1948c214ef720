import type { KVCache } from '../cache/kvcache.js';
import type { Kernels } from '../kernels/api.js';
import { ropeOf } from '../kernels/rope.js';
import type { ModelConfig } from './config.js';
import type { Weights } from './weights.js';

/** Activation buffers for chunks of up to `maxChunk` tokens, allocated once per session. */
export interface Scratch {
  maxChunk: number;
  ids: number;       // i32 [maxChunk]
  positions: number; // i32 [maxChunk]
  x: number;         // residual stream [maxChunk × hidden]
  xb: number;        // normed input [maxChunk × hidden]
  xb2: number;       // projection output [maxChunk × hidden]
  q: number;         // [maxChunk × heads × headDim]
  k: number;         // [maxChunk × kvHeads × headDim]
  v: number;         // [maxChunk × kvHeads × headDim]
  att: number;       // attention output [maxChunk × heads × headDim]
  gate: number;      // [maxChunk × ffn]
  up: number;        // [maxChunk × ffn]
  logits: number;    // [maxChunk × vocab]
}

export function allocScratch(k: Kernels, c: ModelConfig, maxChunk: number): Scratch {
  const held: number[] = [];
  const f = (count: number) => {
    const ptr = k.arena.alloc(count * 4);
    held.push(ptr);
    return ptr;
  };
  try {
    return allocAll(maxChunk, f, c);
  } catch (e) {
    for (const ptr of held) k.arena.free(ptr); // a chunk too big for memory leaves nothing behind
    throw e;
  }
}

function allocAll(maxChunk: number, f: (count: number) => number, c: ModelConfig): Scratch {
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  return {
    maxChunk,
    ids: f(maxChunk),
    positions: f(maxChunk),
    x: f(maxChunk * c.hiddenSize),
    xb: f(maxChunk * c.hiddenSize),
    xb2: f(maxChunk * c.hiddenSize),
    q: f(maxChunk * qDim),
    k: f(maxChunk * kvDim),
    v: f(maxChunk * kvDim),
    att: f(maxChunk * qDim),
    gate: f(maxChunk * c.intermediateSize),
    up: f(maxChunk * c.intermediateSize),
    logits: f(maxChunk * c.vocabSize),
  };
}

export function freeScratch(k: Kernels, s: Scratch): void {
  for (const [key, ptr] of Object.entries(s)) if (key !== 'maxChunk') k.arena.free(ptr as number);
}

/**
 * Runs n tokens (ids at positions) through the model, appending them to the cache. Writes logits
 * for every token (`allLogits`) or only the last one to scratch.logits. Returns a view of them.
 */
export function forward(
  k: Kernels, c: ModelConfig, w: Weights, s: Scratch, cache: KVCache,
  ids: ArrayLike<number>, positions: ArrayLike<number>, allLogits: boolean,
): Float32Array {
  return forwardBatch(k, c, w, s, [{ cache, ids, positions, allLogits }]);
}

/** One session's tokens in a forward pass. */
export interface BatchRows {
  cache: KVCache;
  ids: ArrayLike<number>;
  positions: ArrayLike<number>;
  /** Logits for every token (scoring) or only the last one (generation). */
  allLogits: boolean;
}

/**
 * Runs the tokens of several sessions through the model in one pass: every matmul covers the rows
 * of all of them, so the weights are read once for all sequences; each session's rows attend to its
 * own cache. Writes the wanted logits to scratch.logits in batch order and returns a view of them.
 */
export function forwardBatch(k: Kernels, c: ModelConfig, w: Weights, s: Scratch, batch: readonly BatchRows[]): Float32Array {
  const n = batch.reduce((sum, b) => sum + b.ids.length, 0);
  if (n < 1 || n > s.maxChunk) throw new RangeError(`internal: chunk of ${n} tokens, scratch holds ${s.maxChunk}`);
  const hidden = c.hiddenSize;
  const qRow = c.numHeads * c.headDim * 4;
  const kvRow = c.numKvHeads * c.headDim * 4;
  const ids = k.arena.i32(s.ids, n);
  const pos = k.arena.i32(s.positions, n);
  for (let b = 0, r = 0; b < batch.length; r += batch[b]!.ids.length, b++) {
    ids.set(batch[b]!.ids, r);
    pos.set(batch[b]!.positions, r);
  }
  const rope = ropeOf(c);

  k.embed(s.x, w.embed, s.ids, n);
  for (let l = 0; l < c.numLayers; l++) {
    const L = w.layers[l]!;
    // attention block
    k.rmsnorm(s.xb, s.x, L.attnNorm, n, hidden, c.rmsEps);
    k.matmul(s.q, s.xb, L.wq, n);
    k.matmul(s.k, s.xb, L.wk, n);
    k.matmul(s.v, s.xb, L.wv, n);
    if (L.bq) {
      k.addBias(s.q, L.bq, n, L.wq.rows);
      k.addBias(s.k, L.bk, n, L.wk.rows);
      k.addBias(s.v, L.bv, n, L.wv.rows);
    }
    if (L.qNorm) {
      // Qwen3: RMSNorm over each head of q and k, before RoPE
      k.rmsnorm(s.q, s.q, L.qNorm, n * c.numHeads, c.headDim, c.rmsEps);
      k.rmsnorm(s.k, s.k, L.kNorm, n * c.numKvHeads, c.headDim, c.rmsEps);
    }
    // each session's rows are rotated at the positions its cache gives and attend to that cache
    for (let r = 0, b = 0; b < batch.length; r += batch[b]!.ids.length, b++) {
      const { cache } = batch[b]!;
      const m = batch[b]!.ids.length;
      const q = s.q + r * qRow;
      const ropePositions = cache.rotationPositions(l, m, s.positions + r * 4);
      k.rope(q, m, c.numHeads, ropePositions, rope);
      cache.attend(l, q, s.k + r * kvRow, s.v + r * kvRow, pos.subarray(r, r + m), ropePositions, m, s.att + r * qRow);
    }
    k.matmul(s.xb2, s.att, L.wo, n);
    k.add(s.x, s.xb2, n * hidden);
    // feed-forward block (SwiGLU)
    k.rmsnorm(s.xb, s.x, L.ffnNorm, n, hidden, c.rmsEps);
    k.matmul(s.gate, s.xb, L.wGate, n);
    k.matmul(s.up, s.xb, L.wUp, n);
    k.siluMul(s.gate, s.gate, s.up, n * c.intermediateSize);
    k.matmul(s.xb2, s.gate, L.wDown, n);
    k.add(s.x, s.xb2, n * hidden);
  }
  // only the rows whose logits are wanted go through the final norm and the classifier
  let wanted = 0;
  for (let r = 0, b = 0; b < batch.length; r += batch[b]!.ids.length, b++) {
    const m = batch[b]!.ids.length;
    const first = batch[b]!.allLogits ? 0 : m - 1;
    k.rmsnorm(s.xb + wanted * hidden * 4, s.x + (r + first) * hidden * 4, w.finalNorm, m - first, hidden, c.rmsEps);
    wanted += m - first;
  }
  k.matmul(s.logits, s.xb, w.lmHead, wanted);
  return k.arena.f32(s.logits, wanted * c.vocabSize);
}
