import type { KVCache } from '../cache/kvcache.js';
import type { Kernels } from '../kernels/api.js';
import type { MatmulPart } from '../kernels/types.js';
import { ropeOf } from '../kernels/rope.js';
import type { ModelConfig } from './config.js';
import type { LayerWeights, WeightGroup, Weights } from './weights.js';

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
  const ptrs: Record<string, number> = {};
  try {
    for (const [name, count] of Object.entries(scratchSizes(c, maxChunk))) ptrs[name] = k.arena.alloc(count * 4);
  } catch (e) {
    for (const ptr of Object.values(ptrs)) k.arena.free(ptr); // a chunk too big for memory leaves nothing behind
    throw e;
  }
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
  /** Per layer, the products that share an input (q/k/v, gate/up), built once so a step allocates nothing. */
  fused: { qkv: MatmulPart[]; gateUp: MatmulPart[] }[];
}

/** One stage per layer group, each with activation buffers for chunks of up to maxChunk tokens. */
export function allocStages(groups: readonly WeightGroup[], c: ModelConfig, maxChunk: number): Stage[] {
  const stages: Stage[] = [];
  try {
    for (const g of groups) {
      const s = allocScratch(g.kernels, c, maxChunk);
      const fused = g.layers.map((L) => ({
        qkv: [{ out: s.q, w: L.wq }, { out: s.k, w: L.wk }, { out: s.v, w: L.wv }],
        gateUp: [{ out: s.gate, w: L.wGate }, { out: s.up, w: L.wUp }],
      }));
      stages.push({ k: g.kernels, s, from: g.from, layers: g.layers, fused });
    }
  } catch (e) {
    freeStages(stages); // a group that does not fit leaves the groups before it as they were
    throw e;
  }
  return stages;
}

export function freeStages(stages: readonly Stage[]): void {
  for (const stage of stages) freeScratch(stage.k, stage.s);
}

/** Runs n tokens (ids at positions) of one session through the model: forwardBatch with one session. */
export function forward(
  c: ModelConfig, w: Weights, stages: readonly Stage[], cache: KVCache,
  ids: ArrayLike<number>, positions: ArrayLike<number>, allLogits: boolean,
): Float32Array {
  return forwardBatch(c, w, stages, [{ cache, ids, positions, allLogits }]);
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
 * own cache. The first stage holds the embedding and the classifier (`w`); the residual stream is
 * copied into each next stage's memory and back. Writes the wanted logits to the first stage's
 * scratch.logits in batch order and returns a view of them.
 */
export function forwardBatch(c: ModelConfig, w: Weights, stages: readonly Stage[], batch: readonly BatchRows[]): Float32Array {
  const n = batch.reduce((sum, b) => sum + b.ids.length, 0);
  const { k, s } = stages[0]!;
  if (n < 1 || n > s.maxChunk) throw new RangeError(`internal: chunk of ${n} tokens, scratch holds ${s.maxChunk}`);
  const hidden = c.hiddenSize;
  const ids = k.arena.i32(s.ids, n);
  for (let b = 0, r = 0; b < batch.length; r += batch[b]!.ids.length, b++) ids.set(batch[b]!.ids, r);
  k.embed(s.x, w.embed, s.ids, n);
  let previous = stages[0]!;
  for (const stage of stages) {
    carryResidual(previous, stage, n * hidden);
    const pos = stage.k.arena.i32(stage.s.positions, n);
    for (let b = 0, r = 0; b < batch.length; r += batch[b]!.ids.length, b++) pos.set(batch[b]!.positions, r);
    for (let i = 0; i < stage.layers.length; i++) layer(stage, c, batch, stage.from + i, pos);
    previous = stage;
  }
  carryResidual(previous, stages[0]!, n * hidden);
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

/** One transformer block on the stage's residual stream: attention, then the SwiGLU feed-forward. */
function layer(stage: Stage, c: ModelConfig, batch: readonly BatchRows[], l: number, pos: Int32Array): void {
  const { k, s } = stage;
  const n = pos.length;
  const L = stage.layers[l - stage.from]!;
  const hidden = c.hiddenSize;
  const qRow = c.numHeads * c.headDim * 4;
  const kvRow = c.numKvHeads * c.headDim * 4;
  // attention block
  k.rmsnorm(s.xb, s.x, L.attnNorm, n, hidden, c.rmsEps);
  const fused = stage.fused[l - stage.from]!;
  k.matmuls(s.xb, fused.qkv, n);
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
    k.rope(q, m, c.numHeads, ropePositions, ropeOf(c));
    cache.attend(l, q, s.k + r * kvRow, s.v + r * kvRow, pos.subarray(r, r + m), ropePositions, m, s.att + r * qRow);
  }
  k.matmul(s.xb2, s.att, L.wo, n);
  k.add(s.x, s.xb2, n * hidden);
  // feed-forward block (SwiGLU)
  k.rmsnorm(s.xb, s.x, L.ffnNorm, n, hidden, c.rmsEps);
  k.matmuls(s.xb, fused.gateUp, n);
  k.siluMul(s.gate, s.gate, s.up, n * c.intermediateSize);
  k.matmul(s.xb2, s.gate, L.wDown, n);
  k.add(s.x, s.xb2, n * hidden);
}

/** Copies the residual stream (`count` f32) from one stage's memory into the next one's. */
function carryResidual(from: Stage, to: Stage, count: number): void {
  if (from === to) return;
  to.k.arena.f32(to.s.x, count).set(from.k.arena.f32(from.s.x, count));
}
