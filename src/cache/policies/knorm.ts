import { BUDGET_PARAMS } from '../budget.js';
import type { AttentionStats, PolicyKind, PolicyShape } from '../policy.js';
import type { ParamValue } from '../spec.js';
import { BudgetPolicy, SlotArrays } from './base.js';

/** Key-norm baseline (kvpress KnormPress): keys with the largest norm go first. */
class KnormPolicy extends BudgetPolicy {
  readonly tailQueries = 0;
  readonly needsReceived = false;
  private readonly negNorm: SlotArrays<Float32Array>;

  constructor(params: Record<string, ParamValue>, shape: PolicyShape) {
    super(params, shape);
    this.negNorm = this.track(new SlotArrays((n) => new Float32Array(n), shape));
  }

  override onAppend(layer: number, head: number, from: number, n: number, _p: Int32Array, keyNorms: Float32Array | undefined): void {
    if (!keyNorms) throw new Error('internal: knorm needs key norms');
    const d = this.negNorm.of(layer, head);
    for (let i = 0; i < n; i++) d[from + i] = -keyNorms[i]!;
  }

  protected update(_stats: AttentionStats): void {}

  protected scores(layer: number, head: number): ArrayLike<number> {
    return this.negNorm.of(layer, head);
  }
}

export const knorm: PolicyKind = {
  schema: { name: 'knorm', doc: 'sanity baseline: drop the keys with the largest norm', params: { ...BUDGET_PARAMS } },
  create: (params, shape) => new KnormPolicy(params, shape),
  needsKeyNorms: true,
};
