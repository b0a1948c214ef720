import { BUDGET_PARAMS } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape } from '../policy.js';
import { type BudgetParams, groupMean, ScorePolicy } from './base.js';

/**
 * TOVA (Transformers are Multi-State RNNs): drop the token the current query attends to least
 * (query heads of a KV head averaged). Only the last query's attention matters.
 */
class TovaPolicy extends ScorePolicy {
  readonly tailQueries = 1;
  readonly needsReceived = false;

  constructor(params: BudgetParams, shape: PolicyShape) {
    super(params, shape, "the last query's attention");
  }

  protected update(stats: AttentionStats): void {
    const row = (stats.tailRows - 1) * this.shape.numKvHeads * stats.group * stats.capacity;
    for (let h = 0; h < this.shape.numKvHeads; h++) groupMean(stats.tail, row, h, stats, this.score.of(stats.layer, h));
  }
}

export const tova = policyKind({
  schema: { name: 'tova', doc: 'TOVA: drop the token the current query attends to least', paper: 'Oren et al., Transformers are Multi-State RNNs, EMNLP 2024 (arXiv:2401.06104)', params: BUDGET_PARAMS },
  create: (params, shape) => new TovaPolicy(params, shape),
});
