import { BUDGET_PARAMS } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape, type TokenRows } from '../policy.js';
import { BudgetPolicy, type BudgetParams, rowNorm, SlotArrays } from './base.js';

/** Key-norm baseline (kvpress KnormPress): keys with the largest norm go first. */
class KnormPolicy extends BudgetPolicy {
  readonly tailQueries = 0;
  readonly needsReceived = false;
  private readonly negNorm: SlotArrays<Float32Array>;

  constructor(params: BudgetParams, shape: PolicyShape) {
    super(params, shape);
    this.negNorm = this.track(new SlotArrays((n) => new Float32Array(n), shape));
  }

  override onAppend(layer: number, head: number, from: number, n: number, _p: Int32Array, rows: TokenRows | undefined): void {
    if (!rows) throw new Error('internal: knorm needs the key rows');
    const d = this.negNorm.of(layer, head);
    for (let t = 0; t < n; t++) d[from + t] = -rowNorm(rows.keys, t, rows.headDim);
  }

  protected update(_stats: AttentionStats): void {}

  protected scores(layer: number, head: number): ArrayLike<number> {
    return this.negNorm.of(layer, head);
  }
}

export const knorm = policyKind({
  schema: { name: 'knorm', doc: 'sanity baseline: drop the keys with the largest norm', paper: 'Devoto et al., A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression, EMNLP 2024 (arXiv:2406.11430)', params: BUDGET_PARAMS },
  create: (params, shape) => new KnormPolicy(params, shape),
  needsRows: true,
});
