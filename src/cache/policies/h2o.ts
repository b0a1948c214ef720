import { budget, BUDGET_PARAMS } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape } from '../policy.js';
import { optional, type Infer } from '../../util/schema.js';
import { groupMean, ScorePolicy } from './base.js';

const PARAMS = {
  ...BUDGET_PARAMS,
  recent: optional(budget({ doc: 'newest tokens always kept (count or fraction of the prompt; default half the budget)' })),
};

/**
 * H2O, the Heavy-Hitter Oracle: each token's attention received, summed over every query since it
 * arrived (not normalised); the lowest sum goes, except for the `recent` newest tokens. Without
 * `recent`, half the budget is the recent window (H2O's equal heavy/recent split).
 */
class H2OPolicy extends ScorePolicy<Infer<typeof PARAMS>> {
  readonly tailQueries = 0;
  readonly needsReceived = true;

  constructor(params: Infer<typeof PARAMS>, shape: PolicyShape) {
    super(params, shape, 'accumulated attention');
  }

  protected override recentTokens(layer: number): number {
    return this.params.recent === undefined ? Math.floor(this.budget(layer) / 2) : super.recentTokens(layer);
  }

  protected update(stats: AttentionStats): void {
    const mean = this.scratch(stats.capacity);
    for (let h = 0; h < this.shape.numKvHeads; h++) {
      groupMean(stats.received, 0, h, stats, mean);
      const acc = this.score.of(stats.layer, h);
      for (let s = 0; s < stats.length; s++) acc[s] = acc[s]! + mean[s]!;
    }
  }
}

export const h2o = policyKind({
  schema: { name: 'h2o', doc: 'Heavy-Hitter Oracle: accumulated attention + a recent window', paper: 'Zhang et al., H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models, NeurIPS 2023 (arXiv:2306.14048)', params: PARAMS },
  create: (params, shape) => new H2OPolicy(params, shape),
});
