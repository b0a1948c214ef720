import type { Kernels } from '../kernels/api.js';
import type { Codec, CodecAttention } from './codec.js';

/** Layers [from, to) whose weights, cache and activations live in one kernel memory. */
export interface LayerGroup {
  readonly kernels: Kernels;
  readonly from: number;
  readonly to: number;
}

/**
 * Where a model's layers live: consecutive groups of layers, each in one kernel memory. A model
 * larger than one WebAssembly memory (4 GiB) runs as several groups; the forward pass carries each
 * token's activations from one group's memory to the next, and the first group's memory also holds
 * the embedding and the classifier. The one owner of "which memory holds layer l": the weights
 * (`G` adds each group's layer weights), the cache, its codecs and the forward pass all ask it.
 */
export class LayerGroups<G extends LayerGroup = LayerGroup> {
  /** Per layer, the index of the group holding it. */
  private readonly groupOfLayer: number[] = [];

  constructor(readonly list: readonly G[]) {
    if (list.length === 0) throw new RangeError('internal: no layer group');
    list.forEach((g, i) => {
      const from = i === 0 ? 0 : list[i - 1]!.to;
      if (g.from !== from || g.to <= g.from) throw new RangeError(`internal: layer group ${i} holds layers [${g.from}, ${g.to}), expected from ${from}`);
      for (let l = g.from; l < g.to; l++) this.groupOfLayer.push(i);
    });
  }

  /** Every layer in one memory. */
  static one(kernels: Kernels, numLayers: number): LayerGroups {
    return new LayerGroups([{ kernels, from: 0, to: numLayers }]);
  }

  /** `perMemory` layers in each of `memories` in turn, the last holding the rest. */
  static fill(memories: readonly Kernels[], perMemory: number, numLayers: number): LayerGroups {
    return new LayerGroups(memories.map((kernels, i) => ({ kernels, from: i * perMemory, to: Math.min((i + 1) * perMemory, numLayers) })));
  }

  get count(): number {
    return this.list.length;
  }

  get numLayers(): number {
    return this.groupOfLayer.length;
  }

  /** The group holding layer 0, whose memory also holds the embedding and the classifier. */
  get first(): G {
    return this.list[0]!;
  }

  /** The index of the group holding `layer`. */
  indexOf(layer: number): number {
    const i = this.groupOfLayer[layer];
    if (i === undefined) throw new RangeError(`internal: layer ${layer} is in no layer group`);
    return i;
  }

  /** The group holding `layer`. */
  of(layer: number): G {
    return this.list[this.indexOf(layer)]!;
  }

  /** The same groups, each with what `f` makes of it. */
  map<H extends LayerGroup>(f: (group: G, index: number) => H): LayerGroups<H> {
    return new LayerGroups(this.list.map(f));
  }

  /** The same layers with every group in `kernels`' memory (a session's per-memory tables, measured on scratch). */
  placedIn(kernels: Kernels): LayerGroups {
    return this.map((g) => ({ kernels, from: g.from, to: g.to }));
  }

  /** Each group's part of a per-layer list. */
  split<T>(perLayer: readonly T[]): T[][] {
    return this.list.map((g) => perLayer.slice(g.from, g.to));
  }

  /** The most layers one memory holds, as a share of all: that memory's part of what a cache allocates over every layer. */
  largestShare(): number {
    return Math.max(...this.list.map((g) => g.to - g.from)) / this.numLayers;
  }

  /** Bytes in use in the fullest memory. */
  mostUsed(): number {
    return Math.max(...this.list.map((g) => g.kernels.arena.used));
  }
}

/**
 * One codec per layer group, each storing its layers in its group's memory, seen as one codec over
 * every layer: calls go to the group's codec with the layer renumbered inside the group. (turboquant
 * also uses it for runs of layers in one memory stored by different codecs.)
 */
export class GroupedCodec implements Codec {
  readonly readsPositions: boolean;

  constructor(
    private readonly groups: LayerGroups,
    private readonly codecs: readonly Codec[],
  ) {
    this.readsPositions = codecs[0]!.readsPositions;
  }

  private at(layer: number): [Codec, number] {
    const i = this.groups.indexOf(layer);
    return [this.codecs[i]!, layer - this.groups.list[i]!.from];
  }

  resize(capacity: number, keep: number[]): void {
    this.groups.split(keep).forEach((part, i) => this.codecs[i]!.resize(capacity, part));
  }

  write(layer: number, from: number, n: number, keys: number, values: number, positions: number): void {
    const [codec, local] = this.at(layer);
    codec.write(local, from, n, keys, values, positions);
  }

  move(layer: number, head: number, from: number, to: number): void {
    const [codec, local] = this.at(layer);
    codec.move(local, head, from, to);
  }

  attention(layer: number, a: CodecAttention): void {
    const [codec, local] = this.at(layer);
    codec.attention(local, a);
  }

  readRow(layer: number, head: number, slot: number, which: 'key' | 'value'): Float32Array {
    const [codec, local] = this.at(layer);
    return codec.readRow(local, head, slot, which);
  }

  bytes(lengths: readonly number[]): number {
    return this.groups.split(lengths).reduce((sum, part, i) => sum + this.codecs[i]!.bytes(part), 0);
  }

  maxBytes(lengths: readonly number[]): number {
    return this.groups.split(lengths).reduce((sum, part, i) => sum + (this.codecs[i]!.maxBytes?.(part) ?? this.codecs[i]!.bytes(part)), 0);
  }

  /** The mean over layers (the groups' codecs may differ: turboquant's fp16 boundary layers). */
  bitsPerValue(): number {
    return this.groups.list.reduce((sum, g, i) => sum + this.codecs[i]!.bitsPerValue() * (g.to - g.from), 0) / this.groups.numLayers;
  }

  note(): string | undefined {
    const notes = new Set(this.codecs.map((c) => c.note?.()).filter((n) => n !== undefined));
    return notes.size ? [...notes].join(' ') : undefined;
  }

  free(): void {
    for (const codec of this.codecs) codec.free();
  }
}
