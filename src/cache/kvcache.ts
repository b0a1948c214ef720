import type { Kernels } from '../kernels/api.js';
import type { ModelConfig } from '../model/config.js';
import type { ModelIdentity } from '../model/identity.js';
import type { Codec } from './codec.js';
import type { Policy, TokenRows } from './policy.js';
import { CODECS, POLICIES, parseSpec, printSpec } from './registry.js';
import { DEFAULT_CODEC, withDefaults, type CacheSpec } from './spec.js';
import { UsageError } from '../errors.js';

/**
 * A KV cache is a policy × a codec. Per (layer, KV head) it keeps token slots, each knowing its
 * position; the codec stores them and computes attention from its storage; the policy sees the
 * attention probabilities and picks the slots to evict when a layer exceeds its budget.
 *
 * Order of a step: write the new tokens after the live slots, attend (new tokens are the last
 * slots, which the causal rule needs), tell the policy. Eviction runs at `compress()`, which the
 * session calls after each feed: once after a prompt (as the papers compress the prompt), then
 * after every decoded token. Evicted slots are refilled from the end (swap-remove), so order
 * among slots carries no meaning; positions do.
 */
export class KVCache {
  readonly policy: Policy;
  readonly codec: Codec;
  readonly spec: string;
  private readonly lengths: number[];
  private positions: number[] = [];
  private capacity: number;
  private peak = 0;
  private received = 0;
  private lastProbs = 0;
  private tail = new Float32Array(0);
  private readonly needsRows: boolean;
  private referenceSet = false;
  /** Streaming: RoPE positions are ranks among the held tokens, recomputed after evictions. */
  readonly streaming: boolean;
  private ropePositions: number[] = [];
  private ranksValid: boolean[];
  private queryPositions = 0;
  private queryPositionsLength = 0;

  constructor(
    private readonly k: Kernels,
    private readonly config: ModelConfig,
    spec: CacheSpec,
    initialCapacity: number,
    options: { streaming?: boolean; model?: () => ModelIdentity } = {},
  ) {
    spec = withPolicyCodec(spec);
    this.spec = printSpec(spec);
    this.capacity = Math.max(1, initialCapacity);
    this.streaming = options.streaming === true;
    const policyKind = POLICIES.get(spec.policy.name)!;
    const codecKind = CODECS.get(spec.codec.name)!;
    if (this.streaming && spec.policy.name === 'full') {
      throw new UsageError('streaming needs a cache that holds a fixed budget, e.g. window(sinks=4,recent=1020) or h2o(budget=1024)');
    }
    if (this.streaming && !codecKind.ropeOnRead) {
      throw new UsageError(`streaming needs a codec that applies RoPE when reading keys; ${spec.codec.name} stores them rotated`);
    }
    const evictionProblem = spec.policy.name === 'full' ? undefined : codecKind.evictionProblem?.(withDefaults(spec.codec, codecKind.schema));
    if (evictionProblem) throw new UsageError(`cache spec "${this.spec}": ${evictionProblem}`);
    const shape = { numLayers: config.numLayers, numKvHeads: config.numKvHeads, capacity: this.capacity };
    this.policy = policyKind.create(withDefaults(spec.policy, policyKind.schema), shape);
    const ctx = { kernels: k, config, capacity: this.capacity, ropeOnRead: this.streaming, model: options.model };
    this.codec = codecKind.create(withDefaults(spec.codec, codecKind.schema), ctx);
    this.ranksValid = new Array<boolean>(config.numLayers).fill(false);
    this.needsRows = policyKind.needsRows === true;
    this.lengths = new Array<number>(config.numLayers).fill(0);
    this.allocAttentionBuffers();
    for (let l = 0; l < config.numLayers; l++) {
      this.positions.push(k.arena.alloc(config.numKvHeads * this.capacity * 4));
      if (this.streaming) this.ropePositions.push(k.arena.alloc(config.numKvHeads * this.capacity * 4));
    }
  }

  /** Tokens held per KV head in the last layer. */
  get length(): number {
    return this.lengths[this.lengths.length - 1]!;
  }

  /** Tokens held per KV head in each layer. */
  layerLengths(): readonly number[] {
    return this.lengths;
  }

  /** The length that fractional budgets refer to; only the first call counts until reset. */
  setReference(tokens: number): void {
    if (this.referenceSet) return;
    this.referenceSet = true;
    this.policy.setReference(tokens);
  }

  /**
   * Appends n tokens (keys before RoPE, values, positions) to a layer and writes the causal
   * attention of their n queries to `out`. Buffers: f32 [n × heads × headDim]. Queries arrive
   * rotated at their positions, except when streaming: then the cache rotates them at their rank.
   */
  attend(layer: number, q: number, keys: number, values: number, positions: Int32Array, positionsPtr: number, n: number, out: number): void {
    const c = this.config;
    const from = this.lengths[layer]!;
    this.ensureCapacity(from + n);
    let slotPositions = this.positions[layer]!;
    if (this.streaming) {
      positionsPtr = this.streamingPositions(layer, from, n);
      this.k.rope(q, n, c.numHeads, c.headDim, positionsPtr, c.ropeTheta, c.ropeLayout);
      slotPositions = this.ropePositions[layer]!;
    }
    for (let h = 0; h < c.numKvHeads; h++) {
      this.policy.onAppend(layer, h, from, n, positions, this.needsRows ? this.headRows(keys, values, h, n) : undefined);
      this.k.arena.i32(this.positions[layer]! + (h * this.capacity + from) * 4, n).set(positions.subarray(0, n));
    }
    this.codec.write(layer, from, n, keys, values, positionsPtr);
    const length = from + n;
    this.lengths[layer] = length;
    const perQuery = this.policy.maskQuery !== undefined;
    const tailRows = perQuery ? n : Math.min(this.policy.tailQueries, n);
    const plain = n - tailRows; // queries whose individual probabilities nobody needs
    const received = this.policy.needsReceived ? this.received : 0;
    if (received) this.k.arena.f32(received, c.numHeads * this.capacity).fill(0);
    const rowFloats = c.numHeads * c.headDim;
    if (plain > 0) {
      this.codec.attention(layer, { q, out, n: plain, visible: from + 1, positions: slotPositions, lastProbs: 0, received });
    }
    // queries in the policy's tail go one at a time so each one's probabilities can be kept
    const probs = this.k.arena.f32(this.lastProbs, c.numHeads * this.capacity);
    const group = c.numHeads / c.numKvHeads;
    for (let r = 0; r < tailRows; r++) {
      const i = plain + r;
      const query = { q: q + i * rowFloats * 4, out: out + i * rowFloats * 4, n: 1, visible: from + 1 + i, positions: slotPositions };
      const mask = perQuery ? this.queryMask(layer, query, from + 1 + i) : 0;
      this.codec.attention(layer, { ...query, lastProbs: this.lastProbs, received, mask });
      if (perQuery) {
        this.policy.observe({ layer, n: 1, length: from + 1 + i, capacity: this.capacity, group, received: new Float32Array(0), tail: probs, tailRows: 1 });
      } else {
        this.tail.set(probs, r * probs.length);
      }
    }
    if (!perQuery) {
      // masking policies saw each query above; the rest see the whole step at once
      const receivedRows = received ? this.k.arena.f32(received, c.numHeads * this.capacity) : new Float32Array(0);
      this.policy.observe({ layer, n, length, capacity: this.capacity, group, received: receivedRows, tail: this.tail, tailRows });
    }
    this.peak = Math.max(this.peak, this.bytes());
  }

  /** Evicts, in every layer over its budget, down to the policy's target. */
  compress(): void {
    for (let l = 0; l < this.config.numLayers; l++) {
      const length = this.lengths[l]!;
      if (length <= this.policy.budget(l)) continue;
      const keep = Math.min(length, Math.max(1, this.policy.target(l)));
      const count = length - keep;
      for (let h = 0; h < this.config.numKvHeads; h++) {
        const positions = this.k.arena.i32(this.positions[l]! + h * this.capacity * 4, length);
        const evicted = this.policy.choose(l, h, count, { positions, length });
        this.swapRemove(l, h, evicted, length, positions);
      }
      this.lengths[l] = keep;
      this.ranksValid[l] = false;
    }
  }

  /** Real bytes held now: the codec's storage, slot positions, and the policy's per-slot state. */
  bytes(): number {
    const slots = this.lengths.reduce((a, b) => a + b, 0) * this.config.numKvHeads;
    return this.codec.bytes(this.lengths) + slots * 4 + this.policy.bytes();
  }

  /** Highest `bytes()` seen since creation or the last reset. */
  peakBytes(): number {
    return this.peak;
  }

  /** Positions held by a KV head of a layer (a copy). */
  heldPositions(layer: number, head: number): number[] {
    return Array.from(this.k.arena.i32(this.positions[layer]! + head * this.capacity * 4, this.lengths[layer]!));
  }

  reset(): void {
    this.lengths.fill(0);
    this.ranksValid.fill(false);
    this.peak = 0;
    this.policy.reset();
    this.referenceSet = false;
  }

  free(): void {
    this.codec.free();
    for (const p of [...this.positions, ...this.ropePositions, this.received, this.lastProbs]) this.k.arena.free(p);
    if (this.queryPositions) this.k.arena.free(this.queryPositions);
    if (this.mask) this.k.arena.free(this.mask);
    this.positions = [];
    this.ropePositions = [];
  }

  /** Runs one query unmasked to learn its probabilities and asks the policy what to hide from it. */
  private queryMask(layer: number, query: { q: number; out: number; n: number; visible: number; positions: number }, seen: number): number {
    const c = this.config;
    this.codec.attention(layer, { ...query, lastProbs: this.lastProbs, received: 0 });
    const probs = this.k.arena.f32(this.lastProbs, c.numHeads * this.capacity);
    const held = this.k.arena.i32(this.positions[layer]!, c.numKvHeads * this.capacity);
    const mask = this.policy.maskQuery!(layer, probs, seen, this.capacity, held);
    if (!mask) return 0;
    if (this.maskBytes < mask.length) {
      if (this.mask) this.k.arena.free(this.mask);
      this.mask = this.k.arena.alloc(mask.length);
      this.maskBytes = mask.length;
    }
    this.k.arena.u8(this.mask, mask.length).set(mask);
    return this.mask;
  }
  private mask = 0;
  private maskBytes = 0;

  /**
   * Streaming RoPE positions: each held token's rank by position, new tokens after them. Ranks
   * change only when tokens are evicted, so they are recomputed after an eviction. Returns a
   * pointer to the n new tokens' positions (also the queries').
   */
  private streamingPositions(layer: number, from: number, n: number): number {
    const c = this.config;
    if (this.queryPositionsLength < n) {
      if (this.queryPositions) this.k.arena.free(this.queryPositions);
      this.queryPositions = this.k.arena.alloc(n * 4);
      this.queryPositionsLength = n;
    }
    const queries = this.k.arena.i32(this.queryPositions, n);
    for (let i = 0; i < n; i++) queries[i] = from + i;
    for (let h = 0; h < c.numKvHeads; h++) {
      const ranks = this.k.arena.i32(this.ropePositions[layer]! + h * this.capacity * 4, from + n);
      if (!this.ranksValid[layer]) {
        const held = this.k.arena.i32(this.positions[layer]! + h * this.capacity * 4, from);
        const order = Array.from({ length: from }, (_, s) => s).sort((a, b) => held[a]! - held[b]!);
        order.forEach((slot, rank) => (ranks[slot] = rank));
      }
      ranks.set(queries, from);
    }
    this.ranksValid[layer] = true;
    return this.queryPositions;
  }

  /** Moves the survivors at the end into the holes the evicted slots leave below the new length. */
  private swapRemove(layer: number, head: number, evicted: Int32Array, length: number, positions: Int32Array): void {
    const keep = length - evicted.length;
    const gone = new Uint8Array(length);
    for (const s of evicted) gone[s] = 1;
    let mover = length - 1;
    for (const hole of Array.from(evicted).filter((s) => s < keep).sort((a, b) => a - b)) {
      while (gone[mover]) mover--;
      this.codec.move(layer, head, mover, hole);
      this.policy.move(layer, head, mover, hole);
      positions[hole] = positions[mover]!;
      mover--;
    }
  }

  /** One KV head's rows out of the [n × kvHeads × headDim] buffers (before the codec rotates keys). */
  private headRows(keys: number, values: number, head: number, n: number): TokenRows {
    const { numKvHeads, headDim } = this.config;
    const all = { keys: this.k.arena.f32(keys, n * numKvHeads * headDim), values: this.k.arena.f32(values, n * numKvHeads * headDim) };
    const rows = { keys: new Float32Array(n * headDim), values: new Float32Array(n * headDim), headDim };
    for (let t = 0; t < n; t++) {
      const at = (t * numKvHeads + head) * headDim;
      rows.keys.set(all.keys.subarray(at, at + headDim), t * headDim);
      rows.values.set(all.values.subarray(at, at + headDim), t * headDim);
    }
    return rows;
  }

  private allocAttentionBuffers(): void {
    const numbers = this.config.numHeads * this.capacity;
    this.received = this.k.arena.alloc(numbers * 4);
    this.lastProbs = this.k.arena.alloc(numbers * 4);
    this.tail = new Float32Array(Math.max(1, this.policy.tailQueries) * numbers);
  }

  /** Doubles capacity until `needed` slots fit, keeping every layer's live slots. */
  private ensureCapacity(needed: number): void {
    if (needed <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < needed) capacity *= 2;
    const c = this.config;
    this.codec.resize(capacity, this.lengths);
    for (let l = 0; l < c.numLayers; l++) {
      const next = this.k.arena.alloc(c.numKvHeads * capacity * 4);
      for (let h = 0; h < c.numKvHeads; h++) {
        const held = this.k.arena.i32(this.positions[l]! + h * this.capacity * 4, this.lengths[l]!);
        this.k.arena.i32(next + h * capacity * 4, this.lengths[l]!).set(held);
      }
      this.k.arena.free(this.positions[l]!);
      this.positions[l] = next;
      if (this.streaming) {
        this.k.arena.free(this.ropePositions[l]!);
        this.ropePositions[l] = this.k.arena.alloc(c.numKvHeads * capacity * 4);
        this.ranksValid[l] = false;
      }
    }
    this.policy.resize(capacity);
    this.k.arena.free(this.received);
    this.k.arena.free(this.lastProbs);
    this.capacity = capacity;
    this.allocAttentionBuffers();
  }
}

/** A spec that leaves the codec at fp32 gets the policy's own codec, if its kind names one (qhitter). */
function withPolicyCodec(spec: CacheSpec): CacheSpec {
  const kind = POLICIES.get(spec.policy.name)!;
  const unnamed = spec.codec.name === DEFAULT_CODEC.name && Object.keys(spec.codec.params).length === 0;
  if (!kind.defaultCodec || !unnamed) return spec;
  return { policy: spec.policy, codec: parseSpec(kind.defaultCodec(withDefaults(spec.policy, kind.schema))).codec };
}

/** Bytes the full f32 cache holds for `tokens` tokens: keys, values and positions. */
export function fullCacheBytes(c: ModelConfig, tokens: number): number {
  return tokens * c.numLayers * c.numKvHeads * (2 * c.headDim * 4 + 4);
}
