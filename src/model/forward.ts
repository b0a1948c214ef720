import type { KVCache } from '../cache/kvcache.js';
import type { Kernels } from '../kernels/api.js';
import { ropeOf } from '../kernels/rope.js';
import type { ModelConfig } from './config.js';
import type { LayerWeights, Weights } from './weights.js';

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

/** f32/i32 numbers of each scratch buffer for chunks of up to maxChunk tokens. */
function scratchSizes(c: ModelConfig, maxChunk: number): Omit<Scratch, 'maxChunk'> {
  const qDim = c.numHeads * c.headDim;
  const kvDim = c.numKvHeads * c.headDim;
  return {
    ids: maxChunk,
    positions: maxChunk,
    x: maxChunk * c.hiddenSize,
    xb: maxChunk * c.hiddenSize,
    xb2: maxChunk * c.hiddenSize,
    q: maxChunk * qDim,
    k: maxChunk * kvDim,
    v: maxChunk * kvDim,
    att: maxChunk * qDim,
    gate: maxChunk * c.intermediateSize,
    up: maxChunk * c.intermediateSize,
    logits: maxChunk * c.vocabSize,
  };
}

export function allocScratch(k: Kernels, c: ModelConfig, maxChunk: number): Scratch {
  const sizes = scratchSizes(c, maxChunk);
  const ptrs = Object.fromEntries(Object.entries(sizes).map(([name, count]) => [name, k.arena.alloc(count * 4)]));
  return { maxChunk, ...(ptrs as Omit<Scratch, 'maxChunk'>) };
}

/** Bytes allocScratch takes. */
export function scratchBytes(c: ModelConfig, maxChunk: number): number {
  return Object.values(scratchSizes(c, maxChunk)).reduce((sum, count) => sum + count * 4, 0);
}

export function freeScratch(k: Kernels, s: Scratch): void {
  for (const [key, ptr] of Object.entries(s)) if (key !== 'maxChunk') k.arena.free(ptr as number);
}

/**
 * A layer group's share of a forward pass: its kernels (and memory), its layers' weights starting at
 * layer `from`, and activation buffers in that memory. A model in one memory is one stage.
 */
export interface Stage {
  k: Kernels;
  s: Scratch;
  from: number;
  layers: LayerWeights[];
}

/**
 * Runs n tokens (ids at positions) through the model, appending them to the cache. The first stage
 * holds the embedding and the classifier (`w`); the residual stream is copied into each next stage's
 * memory and back. Writes logits for every token (`allLogits`) or only the last one to the first
 * stage's scratch.logits. Returns a view of them.
 */
export function forward(
  c: ModelConfig, w: Weights, stages: readonly Stage[], cache: KVCache,
  ids: ArrayLike<number>, positions: ArrayLike<number>, allLogits: boolean,
): Float32Array {
  const n = ids.length;
  const { k, s } = stages[0]!;
  if (n < 1 || n > s.maxChunk) throw new RangeError(`internal: chunk of ${n} tokens, scratch holds ${s.maxChunk}`);
  const hidden = c.hiddenSize;
  k.arena.i32(s.ids, n).set(ids);
  k.embed(s.x, w.embed, s.ids, n);
  let previous = stages[0]!;
  for (const stage of stages) {
    carryResidual(previous, stage, n * hidden);
    const pos = stage.k.arena.i32(stage.s.positions, n);
    pos.set(positions);
    for (let i = 0; i < stage.layers.length; i++) layer(stage, c, cache, stage.from + i, pos);
    previous = stage;
  }
  carryResidual(previous, stages[0]!, n * hidden);
  // only the rows whose logits are wanted go through the final norm and the classifier
  const first = allLogits ? 0 : n - 1;
  const rows = n - first;
  k.rmsnorm(s.xb, s.x + first * hidden * 4, w.finalNorm, rows, hidden, c.rmsEps);
  k.matmul(s.logits, s.xb, w.lmHead, rows);
  return k.arena.f32(s.logits, rows * c.vocabSize);
}

/** One transformer block on the stage's residual stream: attention, then the SwiGLU feed-forward. */
function layer(stage: Stage, c: ModelConfig, cache: KVCache, l: number, pos: Int32Array): void {
  const { k, s } = stage;
  const n = pos.length;
  const L = stage.layers[l - stage.from]!;
  const hidden = c.hiddenSize;
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
  const ropePositions = cache.rotationPositions(l, n, s.positions);
  k.rope(s.q, n, c.numHeads, ropePositions, ropeOf(c));
  cache.attend(l, s.q, s.k, s.v, pos, ropePositions, n, s.att);
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

/** Copies the residual stream (`count` f32) from one stage's memory into the next one's. */
function carryResidual(from: Stage, to: Stage, count: number): void {
  if (from === to) return;
  to.k.arena.f32(to.s.x, count).set(from.k.arena.f32(from.s.x, count));
}
