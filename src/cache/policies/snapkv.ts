import { int, type Infer } from '../../util/schema.js';
import { BUDGET_PARAMS } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape, type SlotView } from '../policy.js';
import { groupMean, ScorePolicy } from './base.js';

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
class SnapKVPolicy extends ScorePolicy<Infer<typeof PARAMS>> {
  readonly needsReceived = false;
  readonly tailQueries: number;

  constructor(params: Infer<typeof PARAMS>, shape: PolicyShape) {
    super(params, shape, 'votes since the last cut');
    this.tailQueries = params.window;
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
        const votes = this.score.of(stats.layer, h);
        for (let s = 0; s < stats.length; s++) votes[s] = votes[s]! + mean[s]!;
      }
    }
  }

  protected override scores(layer: number, head: number, view: SlotView): ArrayLike<number> {
    const votes = this.score.of(layer, head);
    if (this.order.length < view.length) this.order = new Int32Array(view.length);
    const pooled = maxPoolByPosition(votes, view, this.params.pool, this.scratch(view.length), this.order);
    votes.fill(0); // the next cut is decided by the next observation window
    return pooled;
  }
  private order = new Int32Array(0);
}

/**
 * Max over the `pool` tokens centred on each token, neighbours taken in position order; written to
 * out[0, view.length) (slot order). `order` is scratch for view.length slot indices.
 */
export function maxPoolByPosition<T extends number[] | Float32Array>(
  votes: ArrayLike<number>, view: SlotView, pool: number,
  out: T = new Array<number>(view.length) as T, order = new Int32Array(view.length),
): T {
  const n = view.length;
  const byPosition = order.subarray(0, n);
  for (let s = 0; s < n; s++) byPosition[s] = s;
  byPosition.sort((a, b) => view.positions[a]! - view.positions[b]!);
  const half = Math.floor(pool / 2);
  for (let i = 0; i < n; i++) {
    let best = -Infinity;
    for (let j = Math.max(0, i - half); j <= Math.min(n - 1, i + half); j++) best = Math.max(best, votes[byPosition[j]!]!);
    out[byPosition[i]!] = best;
  }
  return out;
}

export const snapkv = policyKind({
  schema: { name: 'snapkv', doc: 'SnapKV: observation-window votes, max-pooled over neighbours', paper: 'Li et al., SnapKV: LLM Knows What You are Looking for Before Generation, NeurIPS 2024 (arXiv:2404.14469)', params: PARAMS },
  create: (params, shape) => new SnapKVPolicy(params, shape),
});
