import type { Kernels } from '../kernels/api.js';
import type { ModelConfig } from '../model/config.js';
import type { Codec, CodecAttention } from './codec.js';
import type { CacheObserver } from './observer.js';
import type { AttentionStats, Policy, SlotView, TokenRows } from './policy.js';

/** What a KVCache runs: a policy and a codec that fit together, for one model shape. */
export interface CacheParts {
  /** The canonical spec text (printSpec). */
  spec: string;
  policy: Policy;
  codec: Codec;
  /** Whether the policy's onAppend needs the new tokens' key and value rows. */
  needsRows: boolean;
  /** Keys stored before RoPE and rotated at their rank among the held tokens. */
  streaming: boolean;
  /** Slots per KV head allocated at first. */
  capacity: number;
}

/**
 * A KV cache is a policy × a codec (put together and checked by build.ts). Per (layer, KV head) it
 * keeps token slots, each knowing its position; the codec stores them and computes attention from
 * its storage; the policy sees the attention probabilities and picks the slots to evict when a layer
 * exceeds its budget.
 *
 * Order of a step: write the new tokens after the live slots, attend (new tokens are the last
 * slots, which the causal rule needs), tell the policy. Eviction runs at `compress()`, which the
 * session calls after each feed: once after a prompt (as the papers compress the prompt), then
 * after every decoded token. Evicted slots are refilled from the end (swap-remove), so order
 * among slots carries no meaning; positions do. A policy that never evicts keeps token p at slot p,
 * so no position is stored: codecs that read positions get one shared table of slot indices.
 */
export class KVCache {
  readonly policy: Policy;
  readonly codec: Codec;
  readonly spec: string;
  /** Told of every write and compression while attached (the trace); undefined costs nothing. */
  observer: CacheObserver | undefined;
  private readonly lengths: number[];
  /** Per layer, Int32 [numKvHeads × capacity]: each slot's position (only when the policy evicts). */
  private positions: number[] = [];
  /** Int32 [numKvHeads × capacity]: slot indices, when the policy never evicts and positions are read (else 0). */
  private slotIndices = 0;
  protected capacity: number;
  private peak = 0;
  private held = 0;
  private received = 0;
  protected lastProbs = 0;
  private tail = new Float32Array(0);
  private readonly needsRows: boolean;
  private promptLengthSet = false;
  /** Streaming: RoPE positions are ranks among the held tokens, recomputed after evictions. */
  readonly streaming: boolean;
  private ropePositions: number[] = [];
  private ranksValid: boolean[];
  private queryPositions = 0;
  private queryPositionsLength = 0;
  // scratch reused by every step, grown with the capacity
  private rows: TokenRows = { keys: new Float32Array(0), values: new Float32Array(0), headDim: 0 };
  private evicted = new Int32Array(0);
  private gone = new Uint8Array(0);
  protected readonly call: CodecAttention = { q: 0, out: 0, n: 0, visible: 0, positions: 0, lastProbs: 0, received: 0 };
  protected readonly attentionStats: AttentionStats = { layer: 0, n: 0, length: 0, capacity: 0, group: 1, received: new Float32Array(0), tail: new Float32Array(0), tailRows: 0 };
  private readonly view: SlotView = { positions: new Int32Array(0), length: 0 };

  constructor(
    protected readonly k: Kernels,
    protected readonly config: ModelConfig,
    parts: CacheParts,
  ) {
    this.spec = parts.spec;
    this.policy = parts.policy;
    this.codec = parts.codec;
    this.needsRows = parts.needsRows;
    this.streaming = parts.streaming;
    this.capacity = parts.capacity;
    this.ranksValid = new Array<boolean>(config.numLayers).fill(false);
    this.lengths = new Array<number>(config.numLayers).fill(0);
    this.attentionStats.group = config.numHeads / config.numKvHeads;
    this.allocSlotBuffers();
    for (let l = 0; l < config.numLayers; l++) {
      if (this.policy.evicts) this.positions.push(k.arena.alloc(config.numKvHeads * this.capacity * 4));
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
  setPromptLength(tokens: number): void {
    if (this.promptLengthSet) return;
    this.promptLengthSet = true;
    this.policy.setPromptLength(tokens);
  }

  /**
   * Int32 pointer to the positions a layer's n next tokens are rotated at (queries and keys): their
   * own `positions`, or when streaming their ranks among the held tokens, which this brings up to date.
   */
  rotationPositions(layer: number, n: number, positions: number): number {
    if (!this.streaming) return positions;
    const from = this.lengths[layer]!;
    this.ensureCapacity(from + n);
    return this.streamingPositions(layer, from, n);
  }

  /**
   * Appends n tokens (keys before RoPE, values, positions) to a layer and writes the causal
   * attention of their n queries to `out`. Buffers: f32 [n × heads × headDim]. `ropePositions` is
   * what `rotationPositions` gave for these tokens; queries arrive rotated at them.
   */
  attend(layer: number, q: number, keys: number, values: number, positions: Int32Array, ropePositions: number, n: number, out: number): void {
    const c = this.config;
    const from = this.lengths[layer]!;
    this.ensureCapacity(from + n);
    const slotPositions = this.streaming ? this.ropePositions[layer]! : this.slotPositions(layer);
    this.storePositions(layer, from, n, positions);
    for (let h = 0; h < c.numKvHeads; h++) {
      this.policy.onAppend(layer, h, from, n, positions, this.needsRows ? this.headRows(keys, values, h, n) : undefined);
    }
    const observed = this.observer && { keys: this.k.arena.f32(keys, n * c.numKvHeads * c.headDim).slice(), values: this.k.arena.f32(values, n * c.numKvHeads * c.headDim).slice() };
    this.codec.write(layer, from, n, keys, values, ropePositions);
    if (observed) this.observer!.written(layer, from, n, observed.keys, observed.values, positions);
    this.lengths[layer] = from + n;
    this.attendQueries(layer, q, out, from, n, slotPositions);
    // a step ends with the last layer; eviction waits for compress(), so this is the step's peak
    if (layer === c.numLayers - 1) this.peak = Math.max(this.peak, this.bytes());
  }

  /**
   * Attention of the n new queries (slots [from, from+n) are written), and what the policy learns
   * from it: queries whose probabilities the policy needs (its `tailQueries`) one by one, the rest
   * as one causal block that accumulates the attention each slot received.
   */
  protected attendQueries(layer: number, q: number, out: number, from: number, n: number, slotPositions: number): void {
    const c = this.config;
    const tailRows = Math.min(this.policy.tailQueries, n);
    const plain = n - tailRows; // queries whose individual probabilities nobody needs
    const received = this.policy.needsReceived ? this.received : 0;
    const probsLength = c.numHeads * this.capacity;
    if (received) this.k.arena.f32(received, probsLength).fill(0);
    const call = this.call;
    call.positions = slotPositions;
    call.received = received;
    if (plain > 0) {
      call.q = q;
      call.out = out;
      call.n = plain;
      call.visible = from + 1;
      call.lastProbs = 0;
      this.codec.attention(layer, call);
    }
    const probs = tailRows > 0 ? this.k.arena.f32(this.lastProbs, probsLength) : this.tail;
    const rowBytes = c.numHeads * c.headDim * 4;
    for (let r = 0; r < tailRows; r++) {
      const i = plain + r;
      call.q = q + i * rowBytes;
      call.out = out + i * rowBytes;
      call.n = 1;
      call.visible = from + 1 + i;
      call.lastProbs = this.lastProbs;
      this.codec.attention(layer, call);
      this.tail.set(probs, r * probsLength);
    }
    const stats = this.attentionStats;
    stats.layer = layer;
    stats.n = n;
    stats.length = from + n;
    stats.capacity = this.capacity;
    stats.received = received ? this.k.arena.f32(received, probsLength) : EMPTY;
    stats.tail = this.tail;
    stats.tailRows = tailRows;
    this.policy.observe(stats);
  }

  /** Ends a step: evicts where a layer is over its budget, then tells the observer what is held. */
  compress(): void {
    if (this.policy.evicts) this.evict();
    this.held = Math.max(this.held, this.bytes());
    this.observer?.compressed();
  }

  /** Evicts, in every layer over its budget, down to the policy's target. */
  private evict(): void {
    for (let l = 0; l < this.config.numLayers; l++) {
      const length = this.lengths[l]!;
      if (length <= this.policy.budget(l)) continue;
      const keep = Math.min(length, Math.max(1, this.policy.target(l)));
      const count = length - keep;
      for (let h = 0; h < this.config.numKvHeads; h++) {
        const positions = this.k.arena.i32(this.positions[l]! + h * this.capacity * 4, length);
        this.view.positions = positions;
        this.view.length = length;
        this.policy.choose(l, h, count, this.view, this.evicted);
        this.swapRemove(l, h, count, length, positions);
      }
      this.lengths[l] = keep;
      this.ranksValid[l] = false;
    }
  }

  /** Real bytes held now: the codec's storage, slot positions, and the policy's per-slot state. */
  bytes(): number {
    const c = this.config;
    let slots = 0;
    for (const length of this.lengths) slots += length * c.numKvHeads;
    const positions = this.policy.evicts ? slots * 4 : this.slotIndices ? c.numKvHeads * this.capacity * 4 : 0;
    return this.codec.bytes(this.lengths) + positions + this.policy.bytes(this.lengths);
  }

  /**
   * The most `bytes()` can be while layer l holds lengths[l] tokens, whatever state the codec is in
   * (what a server reserves before a request runs); `policyBytesPerSlot`: the policy's state per slot.
   */
  maxBytes(lengths: readonly number[], policyBytesPerSlot: number): number {
    const c = this.config;
    let slots = 0;
    let longest = 0;
    for (const length of lengths) {
      slots += length * c.numKvHeads;
      longest = Math.max(longest, length);
    }
    let capacity = this.capacity;
    while (capacity < longest) capacity *= 2;
    const positions = this.policy.evicts ? slots * 4 : this.slotIndices ? c.numKvHeads * capacity * 4 : 0;
    return (this.codec.maxBytes?.(lengths) ?? this.codec.bytes(lengths)) + positions + slots * policyBytesPerSlot;
  }

  /** Highest `bytes()` seen at the end of a step since creation or the last reset: the transient peak before eviction. */
  peakBytes(): number {
    return this.peak;
  }

  /** Highest `bytes()` after a compression since creation or the last reset: what the cache holds between steps. */
  heldBytes(): number {
    return this.held;
  }

  /** Positions held by a KV head of a layer (a copy). */
  heldPositions(layer: number, head: number): number[] {
    const length = this.lengths[layer]!;
    if (!this.policy.evicts) return Array.from({ length }, (_, slot) => slot);
    return Array.from(this.k.arena.i32(this.positions[layer]! + head * this.capacity * 4, length));
  }

  reset(): void {
    this.lengths.fill(0);
    this.ranksValid.fill(false);
    this.peak = 0;
    this.held = 0;
    this.policy.reset();
    this.promptLengthSet = false;
  }

  free(): void {
    this.codec.free();
    for (const p of [...this.positions, ...this.ropePositions, this.received, this.lastProbs, this.slotIndices, this.queryPositions]) if (p) this.k.arena.free(p);
    this.positions = [];
    this.ropePositions = [];
  }

  /** Int32 [numKvHeads × capacity] pointer: each slot's position in a layer (0 when nothing reads them). */
  protected slotPositions(layer: number): number {
    return this.policy.evicts ? this.positions[layer]! : this.slotIndices;
  }

  /** Whether the shared table of slot indices is needed when the policy never evicts. */
  protected get readsSlotIndices(): boolean {
    return this.codec.readsPositions;
  }

  /** Records the new tokens' positions; a cache that never evicts holds position p at slot p. */
  private storePositions(layer: number, from: number, n: number, positions: Int32Array): void {
    const c = this.config;
    if (!this.policy.evicts) {
      for (let i = 0; i < n; i++) {
        if (positions[i] !== from + i) throw new Error(`internal: a cache that never evicts holds position ${positions[i]} at slot ${from + i}`);
      }
      return;
    }
    for (let h = 0; h < c.numKvHeads; h++) {
      const held = this.k.arena.i32(this.positions[layer]! + (h * this.capacity + from) * 4, n);
      for (let i = 0; i < n; i++) held[i] = positions[i]!;
    }
  }

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

  /** Moves the survivors at the end into the holes that evicted[0, count) leave below the new length. */
  private swapRemove(layer: number, head: number, count: number, length: number, positions: Int32Array): void {
    const keep = length - count;
    const gone = this.gone;
    for (let i = 0; i < count; i++) gone[this.evicted[i]!] = 1;
    let mover = length - 1;
    for (let hole = 0; hole < keep; hole++) {
      if (!gone[hole]) continue;
      while (gone[mover]) mover--;
      this.codec.move(layer, head, mover, hole);
      this.policy.move(layer, head, mover, hole);
      positions[hole] = positions[mover]!;
      mover--;
    }
    gone.fill(0, 0, length);
  }

  /** One KV head's rows out of the [n × kvHeads × headDim] buffers (before the codec rotates keys). */
  private headRows(keys: number, values: number, head: number, n: number): TokenRows {
    const { numKvHeads, headDim } = this.config;
    const rows = this.rows;
    if (rows.keys.length < n * headDim) {
      this.rows = { keys: new Float32Array(n * headDim), values: new Float32Array(n * headDim), headDim };
      return this.headRows(keys, values, head, n);
    }
    const allKeys = this.k.arena.f32(keys, n * numKvHeads * headDim);
    const allValues = this.k.arena.f32(values, n * numKvHeads * headDim);
    for (let t = 0; t < n; t++) {
      const at = (t * numKvHeads + head) * headDim;
      for (let i = 0; i < headDim; i++) {
        rows.keys[t * headDim + i] = allKeys[at + i]!;
        rows.values[t * headDim + i] = allValues[at + i]!;
      }
    }
    return rows;
  }

  /** Buffers sized by the capacity: attention outputs for the policy, eviction scratch, slot indices. */
  private allocSlotBuffers(): void {
    const c = this.config;
    const numbers = c.numHeads * this.capacity;
    this.received = this.k.arena.alloc(numbers * 4);
    this.lastProbs = this.k.arena.alloc(numbers * 4);
    this.tail = new Float32Array(Math.max(1, this.policy.tailQueries) * numbers);
    this.evicted = new Int32Array(this.capacity);
    this.gone = new Uint8Array(this.capacity);
    if (!this.policy.evicts && this.readsSlotIndices) {
      this.slotIndices = this.k.arena.alloc(c.numKvHeads * this.capacity * 4);
      const table = this.k.arena.i32(this.slotIndices, c.numKvHeads * this.capacity);
      for (let i = 0; i < table.length; i++) table[i] = i % this.capacity;
    }
  }

  /** Doubles capacity until `needed` slots fit, keeping every layer's live slots. */
  private ensureCapacity(needed: number): void {
    if (needed <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < needed) capacity *= 2;
    const c = this.config;
    this.codec.resize(capacity, this.lengths);
    for (let l = 0; l < c.numLayers; l++) {
      if (this.policy.evicts) {
        const next = this.k.arena.alloc(c.numKvHeads * capacity * 4);
        for (let h = 0; h < c.numKvHeads; h++) {
          const held = this.k.arena.i32(this.positions[l]! + h * this.capacity * 4, this.lengths[l]!);
          this.k.arena.i32(next + h * capacity * 4, this.lengths[l]!).set(held);
        }
        this.k.arena.free(this.positions[l]!);
        this.positions[l] = next;
      }
      if (this.streaming) {
        this.k.arena.free(this.ropePositions[l]!);
        this.ropePositions[l] = this.k.arena.alloc(c.numKvHeads * capacity * 4);
        this.ranksValid[l] = false;
      }
    }
    this.policy.resize(capacity);
    for (const p of [this.received, this.lastProbs, this.slotIndices]) if (p) this.k.arena.free(p);
    this.slotIndices = 0;
    this.capacity = capacity;
    this.allocSlotBuffers();
  }
}

const EMPTY = new Float32Array(0);

/** Bytes the full f32 cache holds for `tokens` tokens: keys and values (a cache that never evicts stores no positions). */
export function fullCacheBytes(c: ModelConfig, tokens: number): number {
  return tokens * c.numLayers * c.numKvHeads * 2 * c.headDim * 4;
}
