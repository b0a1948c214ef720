import type { Kernels } from '../kernels/api.js';
import { kvBytesPerToken, type ModelConfig } from '../model/config.js';
import type { LayerGroups } from './layer-groups.js';
import type { Codec, CodecAttention, MaskingCodec } from './codec.js';
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
  /** Whether the policy's choice reads stored keys (SlotView.key). */
  readsKeys?: boolean;
  /** Keys stored before RoPE and rotated at their rank among the held tokens. */
  streaming: boolean;
  /** Slots per KV head allocated at first. */
  capacity: number;
  /** Kernel memories holding the layers' caches. */
  groups: LayerGroups;
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
  /** Per layer: the slots each KV head uses, [0, length) (with heads=adakv, the longest head's). */
  private readonly lengths: number[];
  /**
   * heads=adakv (the policy's raggedHeads): per layer, the tokens each KV head holds in slots
   * [0, count); new tokens go after each head's own. Attention covers the longest head's slots and
   * leaves out, by a mask, those past a shorter head's end (they hold nothing: bytes count held slots).
   */
  private readonly ragged: boolean;
  private headLengths: Int32Array[] = [];
  private masks: number[] = [];
  private headEvicted: Int32Array[] = [];
  private readonly headCounts: Int32Array;
  private readonly headViews: SlotView[];
  private readonly meanLengths: number[];
  /** Per layer, Int32 [numKvHeads × capacity]: each slot's position (only when the policy evicts). */
  private positions: number[] = [];
  /** Per layer group, Int32 [numKvHeads × capacity]: slot indices, when the policy never evicts and positions are read (else 0). */
  private slotIndices: number[] = [];
  /** Layers whose cache lives in each kernel memory (one group unless the model is split). */
  private readonly groups: LayerGroups;
  protected capacity: number;
  private peak = 0;
  private held = 0;
  /** Per layer group (the attention kernel writes them in its own memory). */
  private received: number[] = [];
  private lastProbs: number[] = [];
  private tail = new Float32Array(0);
  private readonly needsRows: boolean;
  private readonly readsKeys: boolean;
  private promptLengthSet = false;
  /** Streaming: RoPE positions are ranks among the held tokens, recomputed after evictions. */
  readonly streaming: boolean;
  private ropePositions: number[] = [];
  private ranksValid: boolean[];
  private queryPositions: number[] = [];
  private queryPositionsLength = 0;
  // scratch reused by every step, grown with the capacity
  private rows: TokenRows = { keys: new Float32Array(0), values: new Float32Array(0), headDim: 0 };
  private evicted = new Int32Array(0);
  private gone = new Uint8Array(0);
  private rankKeys = new Float64Array(0);
  private slotOfRank = new Int32Array(0);
  /** One token, and none, in every layer (bytesPerToken's lengths). */
  private readonly oneEach: readonly number[];
  private readonly noneEach: readonly number[];
  protected readonly call: CodecAttention = { q: 0, out: 0, n: 0, visible: 0, positions: 0, lastProbs: 0, received: 0 };
  protected readonly attentionStats: AttentionStats = { layer: 0, n: 0, length: 0, capacity: 0, group: 1, received: new Float32Array(0), tail: new Float32Array(0), tailRows: 0 };
  private readonly view: SlotView = { positions: new Int32Array(0), length: 0 };

  constructor(
    protected readonly config: ModelConfig,
    parts: CacheParts,
  ) {
    this.spec = parts.spec;
    this.policy = parts.policy;
    this.codec = parts.codec;
    this.needsRows = parts.needsRows;
    this.readsKeys = parts.readsKeys === true;
    this.streaming = parts.streaming;
    this.capacity = parts.capacity;
    this.groups = parts.groups;
    this.ranksValid = new Array<boolean>(config.numLayers).fill(false);
    this.lengths = new Array<number>(config.numLayers).fill(0);
    this.ragged = this.policy.raggedHeads === true;
    if (this.ragged) this.headLengths = Array.from({ length: config.numLayers }, () => new Int32Array(config.numKvHeads));
    this.headCounts = new Int32Array(config.numKvHeads);
    this.headViews = Array.from({ length: config.numKvHeads }, () => ({ positions: new Int32Array(0), length: 0 }));
    this.meanLengths = new Array<number>(config.numLayers).fill(0);
    this.oneEach = new Array<number>(config.numLayers).fill(1);
    this.noneEach = new Array<number>(config.numLayers).fill(0);
    this.attentionStats.group = config.numHeads / config.numKvHeads;
    this.allocSlotBuffers();
    for (let l = 0; l < config.numLayers; l++) {
      const arena = this.kernelsOf(l).arena;
      if (this.policy.evicts) this.positions.push(arena.alloc(config.numKvHeads * this.capacity * 4));
      if (this.streaming) this.ropePositions.push(arena.alloc(config.numKvHeads * this.capacity * 4));
    }
  }

  /** The kernels (and memory) holding a layer's cache. */
  protected kernelsOf(layer: number): Kernels {
    return this.groups.of(layer).kernels;
  }

  /** f32 [numHeads × capacity] in a layer's memory: the last query's probabilities. */
  protected lastProbsOf(layer: number): number {
    return this.lastProbs[this.groups.indexOf(layer)]!;
  }

  /**
   * Tokens held per KV head, averaged over the layers and heads: the count `bytesPerToken()` scales by.
   * Layers hold as many each unless their budgets differ (pyramid), heads unless they adapt (adakv);
   * `layerLengths()` gives each layer's longest head.
   */
  meanLength(): number {
    const held = this.heldLengths();
    return held.reduce((a, b) => a + b, 0) / held.length;
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
    const from = this.lengths[layer]!;
    this.append(layer, keys, values, positions, ropePositions, n);
    if (this.policy.observeQueries) {
      const c = this.config;
      this.policy.observeQueries(layer, this.kernelsOf(layer).arena.f32(q, n * c.numHeads * c.headDim), n, this.kernelsOf(layer).arena.i32(ropePositions, n));
    }
    const slotPositions = this.streaming ? this.ropePositions[layer]! : this.slotPositions(layer);
    if (this.ragged && this.headLengths[layer]!.some((count) => count !== from + n)) this.attendRagged(layer, q, out, n, slotPositions);
    else this.attendQueries(layer, q, out, from, n, slotPositions);
    // a step ends with the last layer; eviction waits for compress(), so this is the step's peak
    if (layer === this.config.numLayers - 1) this.peak = Math.max(this.peak, this.bytes());
  }

  /** Stores n tokens after a layer's live slots (as `attend` does) without attending. */
  private append(layer: number, keys: number, values: number, positions: Int32Array, ropePositions: number, n: number): void {
    const c = this.config;
    const from = this.lengths[layer]!;
    this.ensureCapacity(from + n);
    this.storePositions(layer, from, n, positions);
    for (let h = 0; h < c.numKvHeads; h++) {
      const headFrom = this.ragged ? this.headLengths[layer]![h]! : from;
      this.policy.onAppend(layer, h, headFrom, n, positions, this.needsRows ? this.headRows(layer, keys, values, h, n) : undefined);
    }
    const arena = this.kernelsOf(layer).arena;
    const observed = this.observer && { keys: arena.f32(keys, n * c.numKvHeads * c.headDim).slice(), values: arena.f32(values, n * c.numKvHeads * c.headDim).slice() };
    this.codec.write(layer, from, n, keys, values, ropePositions);
    if (observed) this.observer!.written(layer, from, n, observed.keys, observed.values, positions);
    this.lengths[layer] = from + n;
    if (this.ragged) this.packHeads(layer, from, n);
  }

  /** heads=adakv: moves the n tokens just written at slots [from, from+n) of each shorter head to follow its own. */
  private packHeads(layer: number, from: number, n: number): void {
    const counts = this.headLengths[layer]!;
    let longest = 0;
    for (let h = 0; h < counts.length; h++) {
      const to = counts[h]!;
      if (to < from) {
        const positions = this.kernelsOf(layer).arena.i32(this.positions[layer]! + h * this.capacity * 4, from + n);
        for (let i = 0; i < n; i++) {
          this.codec.move(layer, h, from + i, to + i);
          positions[to + i] = positions[from + i]!;
        }
      }
      counts[h] = to + n;
      longest = Math.max(longest, to + n);
    }
    this.lengths[layer] = longest;
  }

  /**
   * Stores given rows (f32 [n × numKvHeads × headDim], keys before RoPE) at the next positions of a
   * layer without attending: fills a long context with synthetic tokens, where running the model
   * over them would take hours (benches). Not for streaming caches.
   */
  appendRows(layer: number, keys: Float32Array, values: Float32Array, positions: Int32Array): void {
    if (this.streaming) throw new Error('appendRows: a streaming cache re-indexes positions; feed it tokens instead');
    const n = positions.length;
    const arena = this.kernelsOf(layer).arena;
    const [k, v, p] = [arena.alloc(keys.byteLength), arena.alloc(values.byteLength), arena.alloc(n * 4)];
    try {
      arena.f32(k, keys.length).set(keys);
      arena.f32(v, values.length).set(values);
      arena.i32(p, n).set(positions);
      this.append(layer, k, v, positions, p, n);
    } finally {
      for (const ptr of [k, v, p]) arena.free(ptr);
    }
  }

  /**
   * Attention of the n new queries (slots [from, from+n) are written), and what the policy learns
   * from it: queries whose probabilities the policy needs (its `tailQueries`) one by one, the rest
   * as one causal block that accumulates the attention each slot received.
   */
  protected attendQueries(layer: number, q: number, out: number, from: number, n: number, slotPositions: number): void {
    const c = this.config;
    const arena = this.kernelsOf(layer).arena;
    const group = this.groups.indexOf(layer);
    const tailRows = Math.min(this.policy.tailQueries, n);
    const plain = n - tailRows; // queries whose individual probabilities nobody needs
    const received = this.policy.needsReceived ? this.received[group]! : 0;
    const lastProbs = this.lastProbs[group]!;
    const probsLength = c.numHeads * this.capacity;
    if (received) arena.f32(received, probsLength).fill(0);
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
    const probs = tailRows > 0 ? arena.f32(lastProbs, probsLength) : this.tail;
    const rowBytes = c.numHeads * c.headDim * 4;
    for (let r = 0; r < tailRows; r++) {
      const i = plain + r;
      call.q = q + i * rowBytes;
      call.out = out + i * rowBytes;
      call.n = 1;
      call.visible = from + 1 + i;
      call.lastProbs = lastProbs;
      this.codec.attention(layer, call);
      this.tail.set(probs, r * probsLength);
    }
    this.report(layer, n, from + n, received ? arena.f32(received, probsLength) : EMPTY, tailRows);
  }

  /** Tells the policy what a layer's attention of n new tokens gave (the tail rows are in `this.tail`). */
  private report(layer: number, n: number, length: number, received: Float32Array, tailRows: number): void {
    const stats = this.attentionStats;
    stats.layer = layer;
    stats.n = n;
    stats.length = length;
    stats.capacity = this.capacity;
    stats.received = received;
    stats.tail = this.tail;
    stats.tailRows = tailRows;
    this.policy.observe(stats);
  }

  /**
   * attendQueries when a layer's heads hold different counts: one query at a time over the longest
   * head's slots, each shorter head's slots past its own view masked out.
   */
  private attendRagged(layer: number, q: number, out: number, n: number, slotPositions: number): void {
    const c = this.config;
    const arena = this.kernelsOf(layer).arena;
    const group = this.groups.indexOf(layer);
    const counts = this.headLengths[layer]!;
    const last = this.lengths[layer]! - n; // slots the longest head held before these tokens
    const tailRows = Math.min(this.policy.tailQueries, n);
    const probsLength = c.numHeads * this.capacity;
    const received = this.policy.needsReceived ? this.received[group]! : 0;
    if (received) arena.f32(received, probsLength).fill(0);
    const mask = arena.u8(this.masks[group]!, probsLength);
    const g = c.numHeads / c.numKvHeads;
    const rowBytes = c.numHeads * c.headDim * 4;
    const call = this.call;
    call.positions = slotPositions;
    call.received = received;
    call.n = 1;
    for (let i = 0; i < n; i++) {
      call.q = q + i * rowBytes;
      call.out = out + i * rowBytes;
      call.visible = last + 1 + i;
      const tail = i >= n - tailRows;
      // always: a query with nothing to report may be split over slot ranges, and the kernel's merge of
      // split ranges is not tested with ranges a mask leaves empty for a head
      call.lastProbs = this.lastProbs[group]!;
      mask.fill(0);
      for (let j = 0; j < c.numHeads; j++) {
        const sees = counts[Math.floor(j / g)]! - n + 1 + i;
        mask.fill(1, j * this.capacity + sees, j * this.capacity + call.visible);
      }
      (this.codec as MaskingCodec).maskedAttention(layer, call, this.masks[group]!);
      if (tail) this.tail.set(arena.f32(call.lastProbs, probsLength), (i - (n - tailRows)) * probsLength);
    }
    this.report(layer, n, last + n, received ? arena.f32(received, probsLength) : EMPTY, tailRows);
  }

  /** Ends a step: evicts where a layer is over its budget (see evict), then tells the observer what is held. */
  compress(maxTokens = Infinity): void {
    if (this.policy.evicts) this.evict(maxTokens);
    this.held = Math.max(this.held, this.bytes());
    this.observer?.compressed();
  }

  /**
   * Evicts, in every layer over its budget, down to the policy's target; with `maxTokens`, also every
   * layer holding more than that, down to it (a byte limit asks for room before the budget does).
   */
  private evict(maxTokens: number): void {
    for (let l = 0; l < this.config.numLayers; l++) {
      if (this.ragged) {
        this.evictHeads(l, maxTokens);
        continue;
      }
      const length = this.lengths[l]!;
      if (length <= Math.min(this.policy.budget(l), maxTokens)) continue;
      const keep = Math.min(length, Math.max(1, Math.min(this.policy.target(l), maxTokens)));
      const count = length - keep;
      for (let h = 0; h < this.config.numKvHeads; h++) {
        const positions = this.kernelsOf(l).arena.i32(this.positions[l]! + h * this.capacity * 4, length);
        this.view.positions = positions;
        this.view.length = length;
        if (this.readsKeys) this.view.key = this.keyReader(l, h);
        this.policy.choose(l, h, count, this.view, this.evicted);
        const ranks = this.streaming && this.ranksValid[l] ? this.kernelsOf(l).arena.i32(this.ropePositions[l]! + h * this.capacity * 4, length) : undefined;
        if (ranks) this.dropRanks(ranks, count);
        this.swapRemove(l, h, this.evicted, count, length, positions, ranks);
      }
      this.lengths[l] = keep;
    }
  }

  /** heads=adakv: a layer over numKvHeads × its budget is cut to numKvHeads × its target, the policy choosing across heads. */
  private evictHeads(layer: number, maxTokens: number): void {
    const heads = this.config.numKvHeads;
    const counts = this.headLengths[layer]!;
    const total = counts.reduce((a, b) => a + b, 0);
    if (total <= heads * Math.min(this.policy.budget(layer), maxTokens)) return;
    const keep = Math.round(heads * Math.max(1, Math.min(this.policy.target(layer), maxTokens)));
    if (total <= keep) return;
    const arena = this.kernelsOf(layer).arena;
    for (let h = 0; h < heads; h++) {
      this.headViews[h]!.positions = arena.i32(this.positions[layer]! + h * this.capacity * 4, counts[h]!);
      this.headViews[h]!.length = counts[h]!;
      if (this.readsKeys) this.headViews[h]!.key = this.keyReader(layer, h);
    }
    this.policy.chooseHeads!(layer, total - keep, this.headViews, this.headEvicted, this.headCounts);
    let longest = 0;
    for (let h = 0; h < heads; h++) {
      const length = counts[h]!;
      const gone = this.headCounts[h]!;
      if (gone >= length) throw new Error(`internal: the policy evicted all ${length} tokens of head ${h} in layer ${layer}`);
      this.swapRemove(layer, h, this.headEvicted[h]!, gone, length, this.headViews[h]!.positions, undefined);
      counts[h] = length - gone;
      longest = Math.max(longest, length - gone);
    }
    this.lengths[layer] = longest;
  }

  /** SlotView.key for a head: its stored keys, decoded (codecs give keys after RoPE unless streaming, which such policies refuse). */
  private keyReader(layer: number, head: number): (slot: number) => Float32Array {
    return (slot) => this.codec.readRow(layer, head, slot, 'key');
  }

  /** Tokens each KV head of a layer holds (they differ only with heads=adakv). */
  headCountsOf(layer: number): number[] {
    return this.ragged ? Array.from(this.headLengths[layer]!) : new Array<number>(this.config.numKvHeads).fill(this.lengths[layer]!);
  }

  /** Slots held over every layer and KV head. */
  heldSlots(): number {
    let slots = 0;
    for (let l = 0; l < this.lengths.length; l++) slots += this.ragged ? this.headLengths[l]!.reduce((a, b) => a + b, 0) : this.lengths[l]! * this.config.numKvHeads;
    return slots;
  }

  /** The positions some layer's KV head holds, ascending. */
  heldTokenPositions(): number[] {
    const held = new Set<number>();
    for (let l = 0; l < this.lengths.length; l++) for (let h = 0; h < this.config.numKvHeads; h++) for (const p of this.heldPositions(l, h)) held.add(p);
    return [...held].sort((a, b) => a - b);
  }

  /** What each layer's heads hold now, for `rollback`. */
  mark(): number[][] {
    return this.lengths.map((_, l) => this.headCountsOf(l));
  }

  /**
   * Drops the tokens appended since `mark` (a scoring pass that must leave nothing behind): they are
   * the last slots of each head, as nothing was evicted since. Not for streaming caches.
   */
  rollback(mark: readonly (readonly number[])[]): void {
    if (this.streaming) throw new Error('internal: a streaming cache cannot roll back');
    mark.forEach((counts, l) => {
      if (this.ragged) this.headLengths[l]!.set(counts);
      this.lengths[l] = Math.max(...counts);
    });
  }

  /** Per layer, the tokens a KV head holds on average (what the per-slot counts of positions and policy state need). */
  private heldLengths(): readonly number[] {
    if (!this.ragged) return this.lengths;
    for (let l = 0; l < this.lengths.length; l++) this.meanLengths[l] = this.headLengths[l]!.reduce((a, b) => a + b, 0) / this.config.numKvHeads;
    return this.meanLengths;
  }

  /** Real bytes held now: the codec's storage, slot positions, and the policy's per-slot state. */
  bytes(): number {
    const c = this.config;
    const lengths = this.heldLengths();
    let slots = 0;
    for (const length of lengths) slots += length * c.numKvHeads;
    const positions = this.policy.evicts ? slots * 4 : this.slotIndices.length * c.numKvHeads * this.capacity * 4; // one slot-index table per memory
    return this.codecBytes() + positions + this.policy.bytes(lengths);
  }

  /**
   * The codec's bytes for what is held. Its storage is per KV head, so when heads hold different
   * counts each (layer, head) adds a head's share of that layer holding its count in every head.
   */
  private codecBytes(): number {
    if (!this.ragged) return this.codec.bytes(this.lengths);
    const none = this.codec.bytes(this.noneEach);
    const one = this.meanLengths.map(() => 0);
    let total = none;
    for (let l = 0; l < one.length; l++) {
      for (const count of this.headLengths[l]!) {
        one[l] = count;
        total += (this.codec.bytes(one) - none) / this.config.numKvHeads;
      }
      one[l] = 0;
    }
    return total;
  }

  /**
   * What one more token held in every layer adds to `bytes()`: its codec storage (as stored now, e.g.
   * f16 while a quantizing codec calibrates), its slot position, and the policy's state per slot.
   */
  bytesPerToken(): number {
    const c = this.config;
    const one = this.codec.bytes(this.oneEach) - this.codec.bytes(this.noneEach);
    const position = this.policy.evicts ? c.numLayers * c.numKvHeads * 4 : 0;
    const mean = this.meanLength();
    return one + position + (mean > 0 ? this.policy.bytes(this.heldLengths()) / mean : 0);
  }

  /**
   * The most `bytes()` can be while layer l holds lengths[l] tokens, whatever state the codec and the
   * policy are in (what a server reserves before a request runs); slot tables grow by doubling from
   * `capacity` (default: this cache's).
   */
  maxBytes(lengths: readonly number[], capacity = this.capacity): number {
    const c = this.config;
    let slots = 0;
    let longest = 0;
    for (const length of lengths) {
      slots += length * c.numKvHeads;
      longest = Math.max(longest, length);
    }
    while (capacity < longest) capacity *= 2;
    const positions = this.policy.evicts ? slots * 4 : this.slotIndices.length * c.numKvHeads * capacity * 4;
    return (this.codec.maxBytes?.(lengths) ?? this.codec.bytes(lengths)) + positions + (this.policy.maxBytes?.(lengths) ?? this.policy.bytes(lengths));
  }

  /** What the bytes, quality or cost of this cache depend on that its spec does not say (the codec's and the policy's notes). */
  note(): string | undefined {
    const notes = [this.codec.note?.(), this.policy.note?.()].filter((n) => n);
    return notes.length ? notes.join('; ') : undefined;
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
    const length = this.ragged ? this.headLengths[layer]![head]! : this.lengths[layer]!;
    if (!this.policy.evicts) return Array.from({ length }, (_, slot) => slot);
    return Array.from(this.kernelsOf(layer).arena.i32(this.positions[layer]! + head * this.capacity * 4, length));
  }

  /** Streaming: the RoPE positions of the tokens a KV head holds in a layer, their ranks by position (a copy, slot order). */
  heldRanks(layer: number, head: number): number[] {
    if (!this.streaming) throw new Error('heldRanks: the cache is not streaming');
    const length = this.lengths[layer]!;
    const arena = this.kernelsOf(layer).arena;
    const ranks = arena.i32(this.ropePositions[layer]! + head * this.capacity * 4, length);
    if (!this.ranksValid[layer]) this.rank(arena.i32(this.positions[layer]! + head * this.capacity * 4, length), ranks);
    return Array.from(ranks);
  }

  reset(): void {
    this.lengths.fill(0);
    for (const counts of this.headLengths) counts.fill(0);
    this.ranksValid.fill(false);
    this.peak = 0;
    this.held = 0;
    this.policy.reset();
    this.promptLengthSet = false;
  }

  free(): void {
    this.codec.free();
    this.positions.forEach((p, l) => this.kernelsOf(l).arena.free(p));
    this.ropePositions.forEach((p, l) => this.kernelsOf(l).arena.free(p));
    this.freeGroupBuffers(this.queryPositions);
    this.freeSlotBuffers();
    this.positions = [];
    this.ropePositions = [];
  }

  /** Int32 [numKvHeads × capacity] pointer: each slot's position in a layer (0 when nothing reads them). */
  protected slotPositions(layer: number): number {
    return this.policy.evicts ? this.positions[layer]! : (this.slotIndices[this.groups.indexOf(layer)] ?? 0);
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
      const held = this.kernelsOf(layer).arena.i32(this.positions[layer]! + (h * this.capacity + from) * 4, n);
      for (let i = 0; i < n; i++) held[i] = positions[i]!;
    }
  }

  /**
   * Streaming RoPE positions: each held token's rank by position, new tokens after them. Ranks
   * change only when tokens are evicted: eviction brings them up to date (dropRanks), and they are
   * sorted afresh only after the capacity grows or the cache is reset. Returns a pointer to the n new
   * tokens' positions (also the queries').
   */
  private streamingPositions(layer: number, from: number, n: number): number {
    const c = this.config;
    if (this.queryPositionsLength < n) {
      this.freeGroupBuffers(this.queryPositions);
      this.queryPositions = this.groups.list.map((g) => g.kernels.arena.alloc(n * 4));
      this.queryPositionsLength = n;
    }
    const arena = this.kernelsOf(layer).arena;
    const queryPositions = this.queryPositions[this.groups.indexOf(layer)]!;
    const queries = arena.i32(queryPositions, n);
    for (let i = 0; i < n; i++) queries[i] = from + i;
    for (let h = 0; h < c.numKvHeads; h++) {
      const ranks = arena.i32(this.ropePositions[layer]! + h * this.capacity * 4, from + n);
      if (!this.ranksValid[layer]) this.rank(arena.i32(this.positions[layer]! + h * this.capacity * 4, from), ranks);
      ranks.set(queries, from);
    }
    this.ranksValid[layer] = true;
    return queryPositions;
  }

  /**
   * ranks[s] = the rank of held[s] among held (positions are distinct): one numeric sort, in place, of
   * position·capacity + slot in scratch grown with the capacity.
   */
  private rank(held: Int32Array, ranks: Int32Array): void {
    const cap = this.capacity;
    const keys = this.rankKeys.subarray(0, held.length);
    for (let s = 0; s < held.length; s++) keys[s] = held[s]! * cap + s;
    keys.sort();
    for (let r = 0; r < keys.length; r++) ranks[keys[r]! % cap] = r;
  }

  /**
   * Streaming ranks after evicting slots evicted[0, count): the survivors keep their order, so walking
   * the slots by rank and counting the kept ones gives their new ranks (one pass, no sort).
   */
  private dropRanks(ranks: Int32Array, count: number): void {
    const slotOfRank = this.slotOfRank;
    const gone = this.gone;
    for (let s = 0; s < ranks.length; s++) slotOfRank[ranks[s]!] = s;
    for (let i = 0; i < count; i++) gone[this.evicted[i]!] = 1;
    let kept = 0;
    for (let r = 0; r < ranks.length; r++) {
      const s = slotOfRank[r]!;
      if (!gone[s]) ranks[s] = kept++;
    }
    for (let i = 0; i < count; i++) gone[this.evicted[i]!] = 0;
  }

  /** Moves the survivors at the end into the holes that evicted[0, count) leave below the new length (their ranks too, when given). */
  private swapRemove(layer: number, head: number, evicted: Int32Array, count: number, length: number, positions: Int32Array, ranks: Int32Array | undefined): void {
    const keep = length - count;
    const gone = this.gone;
    for (let i = 0; i < count; i++) gone[evicted[i]!] = 1;
    let mover = length - 1;
    for (let hole = 0; hole < keep; hole++) {
      if (!gone[hole]) continue;
      while (gone[mover]) mover--;
      this.codec.move(layer, head, mover, hole);
      this.policy.move(layer, head, mover, hole);
      positions[hole] = positions[mover]!;
      if (ranks) ranks[hole] = ranks[mover]!;
      mover--;
    }
    gone.fill(0, 0, length);
  }

  /** One KV head's rows out of the [n × kvHeads × headDim] buffers (before the codec rotates keys). */
  private headRows(layer: number, keys: number, values: number, head: number, n: number): TokenRows {
    const { numKvHeads, headDim } = this.config;
    const rows = this.rows;
    if (rows.keys.length < n * headDim) {
      this.rows = { keys: new Float32Array(n * headDim), values: new Float32Array(n * headDim), headDim };
      return this.headRows(layer, keys, values, head, n);
    }
    const arena = this.kernelsOf(layer).arena;
    const allKeys = arena.f32(keys, n * numKvHeads * headDim);
    const allValues = arena.f32(values, n * numKvHeads * headDim);
    for (let t = 0; t < n; t++) {
      const at = (t * numKvHeads + head) * headDim;
      for (let i = 0; i < headDim; i++) {
        rows.keys[t * headDim + i] = allKeys[at + i]!;
        rows.values[t * headDim + i] = allValues[at + i]!;
      }
    }
    return rows;
  }

  /** Buffers sized by the capacity, one per layer group: attention outputs for the policy, slot indices; eviction scratch. */
  private allocSlotBuffers(): void {
    const c = this.config;
    const numbers = c.numHeads * this.capacity;
    this.received = this.groups.list.map((g) => g.kernels.arena.alloc(numbers * 4));
    this.lastProbs = this.groups.list.map((g) => g.kernels.arena.alloc(numbers * 4));
    this.tail = new Float32Array(Math.max(1, this.policy.tailQueries) * numbers);
    this.evicted = new Int32Array(this.capacity);
    this.gone = new Uint8Array(this.capacity);
    if (this.ragged) {
      this.masks = this.groups.list.map((g) => g.kernels.arena.alloc(numbers));
      this.headEvicted = Array.from({ length: c.numKvHeads }, () => new Int32Array(this.capacity));
    }
    if (this.streaming) {
      this.rankKeys = new Float64Array(this.capacity);
      this.slotOfRank = new Int32Array(this.capacity);
    }
    if (!this.policy.evicts && this.readsSlotIndices) {
      this.slotIndices = this.groups.list.map((g) => {
        const ptr = g.kernels.arena.alloc(c.numKvHeads * this.capacity * 4);
        const table = g.kernels.arena.i32(ptr, c.numKvHeads * this.capacity);
        for (let i = 0; i < table.length; i++) table[i] = i % this.capacity;
        return ptr;
      });
    }
  }

  private freeSlotBuffers(): void {
    for (const list of [this.received, this.lastProbs, this.slotIndices, this.masks]) this.freeGroupBuffers(list);
    this.slotIndices = [];
    this.masks = [];
  }

  /** Frees one buffer per layer group (0: none). */
  private freeGroupBuffers(ptrs: readonly number[]): void {
    ptrs.forEach((p, i) => p && this.groups.list[i]!.kernels.arena.free(p));
  }

  /** Doubles capacity until `needed` slots fit, keeping every layer's live slots. */
  private ensureCapacity(needed: number): void {
    if (needed <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < needed) capacity *= 2;
    const c = this.config;
    this.codec.resize(capacity, this.lengths);
    for (let l = 0; l < c.numLayers; l++) {
      const arena = this.kernelsOf(l).arena;
      if (this.policy.evicts) {
        const next = arena.alloc(c.numKvHeads * capacity * 4);
        for (let h = 0; h < c.numKvHeads; h++) {
          const held = arena.i32(this.positions[l]! + h * this.capacity * 4, this.lengths[l]!);
          arena.i32(next + h * capacity * 4, this.lengths[l]!).set(held);
        }
        arena.free(this.positions[l]!);
        this.positions[l] = next;
      }
      if (this.streaming) {
        arena.free(this.ropePositions[l]!);
        this.ropePositions[l] = arena.alloc(c.numKvHeads * capacity * 4);
        this.ranksValid[l] = false;
      }
    }
    this.policy.resize(capacity);
    this.freeSlotBuffers();
    this.capacity = capacity;
    this.allocSlotBuffers();
  }
}

const EMPTY = new Float32Array(0);

/**
 * The one compression baseline: bytes the full fp16 cache holds for `tokens` tokens, keys and values
 * (a cache that never evicts stores no positions). fp16 is what the KV-compression papers (KVQuant,
 * Q-Hitter, KIVI), llama.cpp and Hugging Face store, and kvpack's default codec.
 */
export function fullCacheBytes(c: ModelConfig, tokens: number): number {
  return tokens * kvBytesPerToken(c, 2);
}

/** What every compression ratio is against, as tables name it ("compression × vs fp16"). */
export const BASELINE_CODEC = 'fp16';

/** How many times fewer bytes than the full fp16 cache `held` is for `tokens` tokens (1 for an empty cache). */
export function compressionRatio(c: ModelConfig, tokens: number, held: number): number {
  return held > 0 ? fullCacheBytes(c, tokens) / held : 1;
}
