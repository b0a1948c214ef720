import { BUDGET_PARAMS } from '../budget.js';
import type { AttentionStats, PolicyKind, PolicyShape, SlotView } from '../policy.js';
import type { ParamValue } from '../spec.js';
import { BudgetPolicy } from './base.js';
import { AttentionHistory } from './history.js';

/**
 * SnapKV: the attention of the last `window` queries (the observation window) votes for each
 * token; votes are max-pooled over `pool` neighbouring positions so that clusters survive together;
 * the top tokens plus the observation window are kept. The paper compresses the prompt once; here
 * the same rule also runs whenever decoding pushes the cache over its budget.
 */
class SnapKVPolicy extends BudgetPolicy {
  readonly needsReceived = false;
  readonly tailQueries: number;
  private readonly history: AttentionHistory<Float32Array>;

  constructor(params: Record<string, ParamValue>, shape: PolicyShape) {
    super(params, shape);
    this.tailQueries = params.window as number;
    this.history = new AttentionHistory((n) => new Float32Array(n), shape, this.tailQueries, (p) => p);
    this.track(this.history.ring);
  }

  protected override recentTokens(): number {
    return this.params.window as number;
  }

  protected update(stats: AttentionStats): void {
    this.history.add(stats, this.shape.numKvHeads, this.scratch(stats.capacity));
  }

  protected scores(layer: number, head: number, view: SlotView): ArrayLike<number> {
    const votes = Array.from({ length: view.length }, (_, s) => this.history.sum(layer, head, s));
    return maxPoolByPosition(votes, view, this.params.pool as number);
  }

  override reset(): void {
    super.reset();
    this.history.reset();
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

export const snapkv: PolicyKind = {
  schema: {
    name: 'snapkv',
    doc: 'SnapKV: observation-window votes, max-pooled over neighbours',
    params: {
      ...BUDGET_PARAMS,
      window: { type: { kind: 'int', min: 1, max: 1024 }, default: 64, doc: 'observation window (last queries that vote)' },
      pool: { type: { kind: 'int', min: 1, max: 63 }, default: 5, doc: 'max-pooling kernel size' },
    },
  },
  create: (params, shape) => new SnapKVPolicy(params, shape),
};
