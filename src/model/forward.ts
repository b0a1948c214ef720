import type { KVCache } from '../cache/kvcache.js';
import type { Kernels } from '../kernels/api.js';
import type { MatmulPart } from '../kernels/types.js';
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

/** A layer's products that share an input (q/k/v, gate/up), built once so a step allocates nothing. */
interface FusedProducts {
  qkv: MatmulPart[];
  gateUp: MatmulPart[];
}

/**
 * A forward pass's activation buffers for chunks of up to `maxChunk` tokens: a Scratch in each layer
 * group's memory (in the order of `w.groups`), and each layer's fused products writing into its
 * group's. The buffers of one pass can serve any session of the model, one pass at a time.
 */
export class Activations {
  /** Per layer group. */
  readonly scratch: readonly Scratch[];
  /** Per layer. */
  readonly fused: readonly FusedProducts[];

  constructor(private readonly w: Weights, c: ModelConfig, readonly maxChunk: number) {
    const scratch: Scratch[] = [];
    try {
      for (const g of w.groups.list) scratch.push(allocScratch(g.kernels, c, maxChunk));
    } catch (e) {
      scratch.forEach((s, i) => freeScratch(w.groups.list[i]!.kernels, s)); // a group that does not fit leaves the groups before it as they were
      throw e;
    }
    this.scratch = scratch;
    this.fused = w.groups.list.flatMap((g, i) => {
      const s = scratch[i]!;
      return g.layers.map((L) => ({
        qkv: [{ out: s.q, w: L.wq }, { out: s.k, w: L.wk }, { out: s.v, w: L.wv }],
        gateUp: [{ out: s.gate, w: L.wGate }, { out: s.up, w: L.wUp }],
      }));
    });
  }

  free(): void {
    this.scratch.forEach((s, i) => freeScratch(this.w.groups.list[i]!.kernels, s));
  }
}

/** Runs n tokens (ids at positions) of one session through the model: forwardBatch with one session. */
export function forward(
  c: ModelConfig, w: Weights, act: Activations, cache: KVCache,
  ids: ArrayLike<number>, positions: ArrayLike<number>, allLogits: boolean,
): Float32Array {
  return forwardBatch(c, w, act, [{ cache, ids, positions, allLogits }]);
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
 * own cache. The first layer group's memory holds the embedding and the classifier; the residual
 * stream is copied into each next group's memory and back. Writes the wanted logits to the first
 * group's scratch.logits in batch order and returns a view of them.
 */
export function forwardBatch(c: ModelConfig, w: Weights, act: Activations, batch: readonly BatchRows[]): Float32Array {
  const n = batch.reduce((sum, b) => sum + b.ids.length, 0);
  const groups = w.groups.list;
  const k = groups[0]!.kernels;
  const s = act.scratch[0]!;
  if (n < 1 || n > act.maxChunk) throw new RangeError(`internal: chunk of ${n} tokens, scratch holds ${act.maxChunk}`);
  const hidden = c.hiddenSize;
  const ids = k.arena.i32(s.ids, n);
  for (let b = 0, r = 0; b < batch.length; r += batch[b]!.ids.length, b++) ids.set(batch[b]!.ids, r);
  k.embed(s.x, w.embed, s.ids, n);
  for (let g = 0; g < groups.length; g++) {
    const { kernels, from, to, layers } = groups[g]!;
    const gs = act.scratch[g]!;
    if (g > 0) carryResidual(groups[g - 1]!.kernels, act.scratch[g - 1]!, kernels, gs, n * hidden);
    const pos = kernels.arena.i32(gs.positions, n);
    for (let b = 0, r = 0; b < batch.length; r += batch[b]!.ids.length, b++) pos.set(batch[b]!.positions, r);
    for (let l = from; l < to; l++) layer(kernels, gs, layers[l - from]!, act.fused[l]!, c, batch, l, pos);
  }
  const last = groups.length - 1;
  if (last > 0) carryResidual(groups[last]!.kernels, act.scratch[last]!, k, s, n * hidden);
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

/** Layer l, one transformer block on its group's residual stream (in `k`'s memory): attention, then the SwiGLU feed-forward. */
function layer(
  k: Kernels, s: Scratch, L: LayerWeights, fused: FusedProducts,
  c: ModelConfig, batch: readonly BatchRows[], l: number, pos: Int32Array,
): void {
  const n = pos.length;
  const hidden = c.hiddenSize;
  const qRow = c.numHeads * c.headDim * 4;
  const kvRow = c.numKvHeads * c.headDim * 4;
  // attention block
  k.rmsnorm(s.xb, s.x, L.attnNorm, n, hidden, c.rmsEps);
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

/** Copies the residual stream (`count` f32) from one group's memory into the next one's. */
function carryResidual(fromK: Kernels, from: Scratch, toK: Kernels, to: Scratch, count: number): void {
  toK.arena.f32(to.x, count).set(fromK.arena.f32(from.x, count));
}
