import { BUDGET_PARAMS } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape } from '../policy.js';
import { BudgetPolicy, type BudgetParams, groupMean, SlotArrays } from './base.js';

/**
 * TOVA (Transformers are Multi-State RNNs): drop the token the current query attends to least
 * (query heads of a KV head averaged). Only the last query's attention matters.
 */
class TovaPolicy extends BudgetPolicy {
  readonly tailQueries = 1;
  readonly needsReceived = false;
  private readonly last: SlotArrays<Float32Array>;

  constructor(params: BudgetParams, shape: PolicyShape) {
    super(params, shape);
    this.last = this.track(new SlotArrays((n) => new Float32Array(n), shape));
  }

  protected update(stats: AttentionStats): void {
    const row = (stats.tailRows - 1) * this.shape.numKvHeads * stats.group * stats.capacity;
    for (let h = 0; h < this.shape.numKvHeads; h++) groupMean(stats.tail, row, h, stats, this.last.of(stats.layer, h));
  }

  protected scores(layer: number, head: number): ArrayLike<number> {
    return this.last.of(layer, head);
  }

  readonly scoreName = "the last query's attention";
  heldScores(layer: number, head: number, length: number): ArrayLike<number> {
    return this.last.of(layer, head).subarray(0, length);
  }
}

export const tova = policyKind({
  schema: { name: 'tova', doc: 'TOVA: drop the token the current query attends to least', paper: 'Oren et al., Transformers are Multi-State RNNs, EMNLP 2024 (arXiv:2401.06104)', params: BUDGET_PARAMS },
  create: (params, shape) => new TovaPolicy(params, shape),
});
