import type { AttentionStats, PolicyShape } from '../policy.js';
import { groupMean, SlotArrays } from './base.js';

/**
 * The last `window` attention steps of every slot, as a ring per slot that all slots of a layer
 * advance together. `record` maps a step's probability (mean over the query heads of the KV head)
 * and the number of tokens that query saw to the number stored.
 */
export class AttentionHistory<T extends Uint8Array | Float32Array> {
  readonly ring: SlotArrays<T>;
  private readonly step: Int32Array;

  constructor(
    make: (n: number) => T,
    shape: PolicyShape,
    readonly window: number,
    private readonly record: (probability: number, seen: number) => number,
  ) {
    this.ring = new SlotArrays(make, shape, window);
    this.step = new Int32Array(shape.numLayers);
  }

  /**
   * Folds in the tail rows of one attention call, oldest first. `onChange(head, slot, old, value)`
   * lets a caller keep running sums. Slots a query could not see get 0 for that step.
   */
  add(stats: AttentionStats, numKvHeads: number, mean: Float32Array, onChange?: (head: number, slot: number, old: number, value: number) => void): void {
    const w = this.window;
    const rowStride = numKvHeads * stats.group * stats.capacity;
    for (let r = 0; r < stats.tailRows; r++) {
      const seen = stats.length - (stats.tailRows - 1 - r);
      const index = this.step[stats.layer]! % w;
      this.step[stats.layer] = this.step[stats.layer]! + 1;
      for (let h = 0; h < numKvHeads; h++) {
        groupMean(stats.tail, r * rowStride, h, stats, mean);
        const ring = this.ring.of(stats.layer, h);
        for (let s = 0; s < stats.length; s++) {
          const value = s < seen ? this.record(mean[s]!, seen) : 0;
          const at = s * w + index;
          onChange?.(h, s, ring[at]!, value);
          ring[at] = value;
        }
      }
    }
  }

  /** Sum of a slot's ring. */
  sum(layer: number, head: number, slot: number): number {
    const ring = this.ring.of(layer, head);
    let total = 0;
    for (let i = slot * this.window; i < (slot + 1) * this.window; i++) total += ring[i]!;
    return total;
  }

  reset(): void {
    this.ring.reset();
    this.step.fill(0);
  }
}
