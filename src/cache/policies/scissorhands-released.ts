import { UsageError } from '../../errors.js';
import type { AttentionStats, MaskingPolicy, PolicyShape } from '../policy.js';
import { SlotArrays } from './base.js';
import { ASCENDING, selectFirst } from '../../util/select.js';

/**
 * scissorhands(mode=reference, …): what the released Scissorhands evaluation code does (its OPT
 * attention with "dropkv"), which hides tokens from each query instead of evicting them:
 * - each query row's threshold is the value at rank int(0.9·L) of that row sorted ascending, L the
 *   sequence length, the zeros of positions after the query included;
 * - for a query at position i ≥ `start` in a compressed layer, a token is hidden when none of the
 *   last `lru_window` query rows gave it more than that row's threshold, unless it is among the last
 *   `position_window` positions; the query's own token always stays;
 * - rows are counted as they were after masking (the code edits the attention matrix row by row);
 * - only layers `layers[0]..layers[1]` are compressed (5..35 in the release); the budget is adaptive,
 *   so nothing is evicted and `stats()` reports the share of tokens the masks kept.
 * The release is multi-head; here each query head keeps its own counts (GQA: the same KV slots).
 * Per slot and query head the state is a ring of lru_window bits and a count.
 */
/** The spec parameters released mode reads (scissorhands.ts declares them). */
export interface ReleasedParams {
  layers: number | readonly number[];
  lru_window: number;
  position_window: number;
  start: number;
}

export class ScissorhandsReleased implements MaskingPolicy {
  readonly evicts = false;
  readonly tailQueries = 1;
  readonly needsReceived = false;
  private promptLength = 0;
  private bits: SlotArrays<Uint8Array> | undefined;
  private counts: SlotArrays<Uint16Array> | undefined;
  private readonly steps: Int32Array;
  private readonly thresholds: Float64Array[];
  private readonly ringBytes: number;
  private capacity: number;
  private kept = 0;
  private seenTotal = 0;

  private readonly params: ReleasedParams & { layers: readonly number[] };

  constructor(params: ReleasedParams, private readonly shape: PolicyShape) {
    const layers = typeof params.layers === 'number' ? [params.layers, params.layers] : params.layers;
    this.params = { ...params, layers };
    if (layers.length !== 2 || layers[0]! > layers[1]!) {
      throw new UsageError(`scissorhands(layers=…) is a range [first,last], got [${layers.join(',')}]`);
    }
    this.ringBytes = Math.ceil(params.lru_window / 8);
    this.steps = new Int32Array(shape.numLayers);
    this.thresholds = Array.from({ length: shape.numLayers }, () => new Float64Array(0));
    this.capacity = shape.capacity;
  }

  budget(): number {
    return Infinity;
  }
  target(): number {
    return Infinity;
  }
  setPromptLength(tokens: number): void {
    this.promptLength = tokens;
  }
  onAppend(layer: number, head: number, from: number, n: number): void {
    if (!this.bits || !this.counts) return;
    const group = this.bits.data.length / (this.shape.numLayers * this.shape.numKvHeads);
    for (let g = 0; g < group; g++) {
      this.bits.clear(layer, head * group + g, from, n);
      this.counts.clear(layer, head * group + g, from, n);
    }
  }

  private compressed(layer: number): boolean {
    const [first, last] = this.params.layers;
    return layer >= first! && layer <= last!;
  }

  /** Per query head, sized on first use (the shape names KV heads; masks are per query head). */
  private state(numHeads: number): { bits: SlotArrays<Uint8Array>; counts: SlotArrays<Uint16Array> } {
    if (!this.bits || !this.counts) {
      const shape = { numLayers: this.shape.numLayers, numKvHeads: numHeads, capacity: this.capacity };
      this.bits = new SlotArrays((n) => new Uint8Array(n), shape, this.ringBytes);
      this.counts = new SlotArrays((n) => new Uint16Array(n), shape);
    }
    return { bits: this.bits, counts: this.counts };
  }

  maskQuery(layer: number, probs: Float32Array, seen: number, capacity: number, positions: Int32Array): Uint8Array | undefined {
    const numHeads = probs.length / capacity;
    const group = numHeads / this.shape.numKvHeads;
    // thresholds from the unmasked row (the release sorts the raw softmax)
    const length = Math.max(this.promptLength, seen);
    const rank = Math.floor(0.9 * length);
    const zeros = length - seen;
    if (this.thresholds[layer]!.length !== numHeads) this.thresholds[layer] = new Float64Array(numHeads);
    const thr = this.thresholds[layer]!;
    if (this.row.length < seen) this.row = new Float32Array(seen);
    for (let h = 0; h < numHeads; h++) {
      thr[h] = 0;
      if (rank < zeros) continue;
      for (let s = 0; s < seen; s++) this.row[s] = probs[h * capacity + s]!;
      const k = Math.min(seen - 1, rank - zeros);
      selectFirst(this.row, seen, k + 1, ASCENDING); // the value at rank k of the sorted row
      thr[h] = this.row[k]!;
    }
    if (!this.compressed(layer)) return undefined;
    const position = positions[seen - 1]!; // the query's own token is the newest slot of every head
    if (position < this.params.start) return undefined;
    const { counts } = this.state(numHeads);
    if (this.mask.length !== numHeads * capacity) this.mask = new Uint8Array(numHeads * capacity);
    const mask = this.mask.fill(0);
    const newestHidden = position - this.params.position_window;
    for (let h = 0; h < numHeads; h++) {
      const c = counts.of(layer, h);
      const held = positions.subarray(Math.floor(h / group) * capacity);
      for (let s = 0; s < seen - 1; s++) {
        const hide = c[s] === 0 && held[s]! < newestHidden;
        mask[h * capacity + s] = hide ? 1 : 0;
        if (!hide) this.kept++;
      }
      this.kept++; // the query's own token
      this.seenTotal += seen;
    }
    return mask;
  }

  /** One query at a time (n = 1): its masked probabilities above its row threshold count for the slots. */
  observe(stats: AttentionStats): void {
    if (!this.compressed(stats.layer)) return;
    const numHeads = this.shape.numKvHeads * stats.group;
    const { bits, counts } = this.state(numHeads);
    const thr = this.thresholds[stats.layer]!;
    const index = this.steps[stats.layer]! % this.params.lru_window;
    this.steps[stats.layer] = this.steps[stats.layer]! + 1;
    const byte = index >> 3;
    const bit = 1 << (index & 7);
    for (let h = 0; h < numHeads; h++) {
      const b = bits.of(stats.layer, h);
      const c = counts.of(stats.layer, h);
      for (let s = 0; s < stats.length; s++) {
        const above = stats.tail[h * stats.capacity + s]! > (thr[h] ?? 0);
        const at = s * this.ringBytes + byte;
        const was = (b[at]! & bit) !== 0;
        if (above === was) continue;
        b[at] = above ? b[at]! | bit : b[at]! & ~bit;
        c[s] = c[s]! + (above ? 1 : -1);
      }
    }
  }

  private row = new Float32Array(0);
  private mask = new Uint8Array(0);

  choose(): void {
    throw new Error('internal: the released Scissorhands hides tokens, it never evicts');
  }
  move(): void {
    throw new Error('internal: the released Scissorhands never evicts, so slots never move');
  }

  stats(): Record<string, number> {
    return { keep_ratio: this.seenTotal ? this.kept / this.seenTotal : 1 };
  }

  bytes(lengths: readonly number[]): number {
    if (!this.bits || !this.counts) return 0;
    const numHeads = this.bits.data.length / this.shape.numLayers;
    const perSlot = this.bits.bytesPerSlot + this.counts.bytesPerSlot;
    let slots = 0;
    for (let l = 0; l < this.shape.numLayers; l++) if (this.compressed(l)) slots += lengths[l]!;
    return slots * numHeads * perSlot;
  }

  /** Its state is sized on first use: what it will be once sized. */
  maxBytes(lengths: readonly number[]): number {
    const numHeads = this.bits ? this.bits.data.length / this.shape.numLayers : (this.shape.numHeads ?? this.shape.numKvHeads);
    let slots = 0;
    for (let l = 0; l < this.shape.numLayers; l++) if (this.compressed(l)) slots += lengths[l]!;
    return slots * numHeads * (this.ringBytes + Uint16Array.BYTES_PER_ELEMENT);
  }

  resize(capacity: number): void {
    this.capacity = capacity;
    this.bits?.resize(capacity);
    this.counts?.resize(capacity);
  }

  reset(): void {
    this.bits?.reset();
    this.counts?.reset();
    this.steps.fill(0); // kept/seenTotal go on: stats() describes the whole run, all chunks
  }
}
