import { int, type Infer } from '../../util/schema.js';
import { BUDGET_PARAMS } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape, type SlotView } from '../policy.js';
import { BudgetPolicy, groupMean, SlotArrays } from './base.js';

const PARAMS = {
  ...BUDGET_PARAMS,
  window: int({ min: 1, max: 1024, default: 64, doc: 'observation window (last queries that vote)' }),
  pool: int({ min: 1, max: 63, default: 5, doc: 'max-pooling kernel size' }),
};

/**
 * SnapKV: the attention of the last `window` queries (the observation window) votes for each
 * token; votes are max-pooled over `pool` neighbouring positions so that clusters survive together;
 * the top tokens plus the observation window are kept.
 *
 * The paper compresses the prompt once. To hold a budget while decoding, the same rule runs again
 * each time the cache fills: it is cut to budget − window, so by the next cut exactly one new
 * observation window has arrived and voted (votes restart at each cut). One float per slot.
 */
class SnapKVPolicy extends BudgetPolicy<Infer<typeof PARAMS>> {
  readonly needsReceived = false;
  readonly tailQueries: number;
  private readonly votes: SlotArrays<Float32Array>;

  constructor(params: Infer<typeof PARAMS>, shape: PolicyShape) {
    super(params, shape);
    this.tailQueries = params.window;
    this.votes = this.track(new SlotArrays((n) => new Float32Array(n), shape));
  }

  /** The observation window, at most half the budget so that the cut leaves room for votes. */
  private window(layer: number): number {
    return Math.max(1, Math.min(this.params.window, Math.floor(this.budget(layer) / 2)));
  }

  override target(layer: number): number {
    return this.budget(layer) - this.window(layer);
  }

  protected override recentTokens(layer: number): number {
    return this.window(layer);
  }

  protected update(stats: AttentionStats): void {
    const mean = this.scratch(stats.capacity);
    const rowStride = this.shape.numKvHeads * stats.group * stats.capacity;
    const first = Math.max(0, stats.tailRows - this.window(stats.layer));
    for (let r = first; r < stats.tailRows; r++) {
      for (let h = 0; h < this.shape.numKvHeads; h++) {
        groupMean(stats.tail, r * rowStride, h, stats, mean);
        const votes = this.votes.of(stats.layer, h);
        for (let s = 0; s < stats.length; s++) votes[s] = votes[s]! + mean[s]!;
      }
    }
  }

  protected scores(layer: number, head: number, view: SlotView): ArrayLike<number> {
    const votes = this.votes.of(layer, head);
    const pooled = maxPoolByPosition(Array.from(votes.subarray(0, view.length)), view, this.params.pool);
    votes.fill(0); // the next cut is decided by the next observation window
    return pooled;
  }

  readonly scoreName = 'votes since the last cut';
  heldScores(layer: number, head: number, length: number): ArrayLike<number> {
    return this.votes.of(layer, head).subarray(0, length);
  }
}

/** Max over the `pool` tokens centred on each token, neighbours taken in position order. */
export function maxPoolByPosition(votes: number[], view: SlotView, pool: number): number[] {
  const order = Array.from({ length: view.length }, (_, s) => s).sort((a, b) => view.positions[a]! - view.positions[b]!);
  const half = Math.floor(pool / 2);
  const pooled = new Array<number>(view.length);
  for (let i = 0; i < order.length; i++) {
    let best = -Infinity;
    for (let j = Math.max(0, i - half); j <= Math.min(order.length - 1, i + half); j++) best = Math.max(best, votes[order[j]!]!);
    pooled[order[i]!] = best;
  }
  return pooled;
}

export const snapkv = policyKind({
  schema: { name: 'snapkv', doc: 'SnapKV: observation-window votes, max-pooled over neighbours', params: PARAMS },
  create: (params, shape) => new SnapKVPolicy(params, shape),
});
