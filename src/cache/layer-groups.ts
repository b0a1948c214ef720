import type { Kernels } from '../kernels/api.js';
import type { Codec, CodecAttention } from './codec.js';

/**
 * Layers [from, to) whose weights, cache and activations live in one kernel memory. A model larger
 * than one WebAssembly memory (4 GiB) runs as several groups; the forward pass carries each token's
 * activations from one group's memory to the next.
 */
export interface LayerGroup {
  kernels: Kernels;
  from: number;
  to: number;
}

/** The group holding `layer`. */
export function groupOf(groups: readonly LayerGroup[], layer: number): LayerGroup {
  for (const g of groups) if (layer < g.to) return g;
  throw new RangeError(`internal: layer ${layer} is in no layer group`);
}

/**
 * One codec per layer group, each storing its layers in its group's memory, seen as one codec over
 * every layer: calls go to the group's codec with the layer renumbered inside the group. (turboquant
 * also uses it for runs of layers in one memory stored by different codecs.)
 */
export class GroupedCodec implements Codec {
  readonly readsPositions: boolean;

  constructor(
    private readonly groups: readonly LayerGroup[],
    private readonly codecs: readonly Codec[],
  ) {
    this.readsPositions = codecs[0]!.readsPositions;
  }

  private at(layer: number): [Codec, number] {
    const i = this.groups.indexOf(groupOf(this.groups, layer));
    return [this.codecs[i]!, layer - this.groups[i]!.from];
  }

  /** Each group's part of a per-layer list. */
  private split(perLayer: readonly number[]): number[][] {
    return this.groups.map((g) => perLayer.slice(g.from, g.to));
  }

  resize(capacity: number, keep: number[]): void {
    this.split(keep).forEach((part, i) => this.codecs[i]!.resize(capacity, part));
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
    return this.split(lengths).reduce((sum, part, i) => sum + this.codecs[i]!.bytes(part), 0);
  }

  maxBytes(lengths: readonly number[]): number {
    return this.split(lengths).reduce((sum, part, i) => sum + (this.codecs[i]!.maxBytes?.(part) ?? this.codecs[i]!.bytes(part)), 0);
  }

  /** The mean over layers (the groups' codecs may differ: turboquant's fp16 boundary layers). */
  bitsPerValue(): number {
    const layers = this.groups[this.groups.length - 1]!.to - this.groups[0]!.from;
    return this.groups.reduce((sum, g, i) => sum + this.codecs[i]!.bitsPerValue() * (g.to - g.from), 0) / layers;
  }

  note(): string | undefined {
    const notes = new Set(this.codecs.map((c) => c.note?.()).filter((n) => n !== undefined));
    return notes.size ? [...notes].join(' ') : undefined;
  }

  free(): void {
    for (const codec of this.codecs) codec.free();
  }
}
