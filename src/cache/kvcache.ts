import type { Kernels, SlotDType } from '../kernels/api.js';
import type { ModelConfig } from '../model/config.js';

export interface CacheOptions {
  /** How each kept key/value number is stored. */
  slotDType: SlotDType;
  /** Slots to preallocate per (layer, KV head); grows by doubling when exceeded. */
  initialCapacity: number;
}

interface LayerStore {
  keys: number;
  values: number;
  /** Token position of each slot, [numKvHeads × capacity]. */
  positions: Int32Array;
  length: number;
}

/**
 * Per-layer key/value slot stores the attention kernel reads in place. The forward pass hands over
 * keys before RoPE with their positions: the cache decides how keys are stored (here: rotated at
 * append, so attention reads them as they are).
 */
export class KVCache {
  private readonly layers: LayerStore[] = [];
  private capacity: number;
  private peak = 0;
  private readonly bytesPerNumber: number;

  constructor(
    private readonly k: Kernels,
    private readonly config: ModelConfig,
    readonly options: CacheOptions,
  ) {
    this.capacity = Math.max(1, options.initialCapacity);
    this.bytesPerNumber = options.slotDType === 'f32' ? 4 : 2;
    for (let l = 0; l < config.numLayers; l++) this.layers.push(this.allocLayer(this.capacity));
  }

  /** Tokens held (per layer and KV head). */
  get length(): number {
    return this.layers[this.layers.length - 1]!.length;
  }

  /**
   * Appends n tokens' keys (before RoPE) and values to a layer and writes the causal attention of
   * their n queries (after RoPE) to `out`. All buffers are f32 [n × heads × headDim] in kernel memory.
   */
  attend(layer: number, q: number, keys: number, values: number, positions: Int32Array, positionsPtr: number, n: number, out: number): void {
    const c = this.config;
    const store = this.layers[layer]!;
    this.ensureCapacity(store.length + n);
    this.k.rope(keys, n, c.numKvHeads, c.headDim, positionsPtr, c.ropeTheta, c.ropeLayout);
    this.write(store, keys, values, positions, n);
    const before = store.length;
    store.length += n;
    this.k.attention({
      out, q, n,
      keys: store.keys, values: store.values, dtype: this.options.slotDType,
      capacity: this.capacity, visible: before + 1,
      numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim,
      scale: 1 / Math.sqrt(c.headDim),
      lastProbs: 0, received: 0,
    });
    this.peak = Math.max(this.peak, this.bytes());
  }

  /** Real bytes held now: the slots in use (keys and values) and their positions. */
  bytes(): number {
    const c = this.config;
    let total = 0;
    for (const s of this.layers) total += s.length * c.numKvHeads * (2 * c.headDim * this.bytesPerNumber + 4);
    return total;
  }

  /** Highest `bytes()` seen since creation or the last reset. */
  peakBytes(): number {
    return this.peak;
  }

  reset(): void {
    for (const s of this.layers) s.length = 0;
    this.peak = 0;
  }

  free(): void {
    for (const s of this.layers) {
      this.k.arena.free(s.keys);
      this.k.arena.free(s.values);
    }
    this.layers.length = 0;
  }

  private allocLayer(capacity: number): LayerStore {
    const c = this.config;
    const bytes = c.numKvHeads * capacity * c.headDim * this.bytesPerNumber;
    return {
      keys: this.k.arena.alloc(bytes),
      values: this.k.arena.alloc(bytes),
      positions: new Int32Array(c.numKvHeads * capacity),
      length: 0,
    };
  }

  /** Doubles every layer's stores until `needed` slots fit, copying what they hold. */
  private ensureCapacity(needed: number): void {
    if (needed <= this.capacity) return;
    let capacity = this.capacity;
    while (capacity < needed) capacity *= 2;
    const c = this.config;
    const row = c.headDim * this.bytesPerNumber;
    for (let l = 0; l < this.layers.length; l++) {
      const old = this.layers[l]!;
      const next = this.allocLayer(capacity);
      const mem = this.k.arena.u8(0, this.k.arena.memory.buffer.byteLength);
      for (let h = 0; h < c.numKvHeads; h++) {
        const from = h * this.capacity * row;
        const to = h * capacity * row;
        mem.copyWithin(next.keys + to, old.keys + from, old.keys + from + old.length * row);
        mem.copyWithin(next.values + to, old.values + from, old.values + from + old.length * row);
        next.positions.set(old.positions.subarray(h * this.capacity, h * this.capacity + old.length), h * capacity);
      }
      next.length = old.length;
      this.k.arena.free(old.keys);
      this.k.arena.free(old.values);
      this.layers[l] = next;
    }
    this.capacity = capacity;
  }

  /** Copies n tokens' rows from [n × kvHeads × headDim] scratch into each head's slots. */
  private write(store: LayerStore, keys: number, values: number, positions: Int32Array, n: number): void {
    const c = this.config;
    const d = c.headDim;
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const slot = h * this.capacity + store.length + t;
        const src = (t * c.numKvHeads + h) * d * 4;
        this.copyRow(store.keys + slot * d * this.bytesPerNumber, keys + src);
        this.copyRow(store.values + slot * d * this.bytesPerNumber, values + src);
        store.positions[slot] = positions[t]!;
      }
    }
  }

  private copyRow(dst: number, src: number): void {
    const d = this.config.headDim;
    if (this.options.slotDType === 'f16') this.k.toF16(dst, src, d);
    else this.k.arena.f32(dst, d).set(this.k.arena.f32(src, d));
  }
}
