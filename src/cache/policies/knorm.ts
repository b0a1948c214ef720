import { BUDGET_PARAMS } from '../budget.js';
import { policyKind, type AttentionStats, type TokenRows } from '../policy.js';
import { rowNorm, ScorePolicy } from './base.js';

/** Key-norm baseline (kvpress KnormPress): keys with the largest norm go first (the score is the norm, negated). */
class KnormPolicy extends ScorePolicy {
  readonly tailQueries = 0;
  readonly needsReceived = false;

  override onAppend(layer: number, head: number, from: number, n: number, _p: Int32Array, rows: TokenRows | undefined): void {
    if (!rows) throw new Error('internal: knorm needs the key rows');
    const d = this.score.of(layer, head);
    for (let t = 0; t < n; t++) d[from + t] = -rowNorm(rows.keys, t, rows.headDim); // RoPE rotates pairs: the norm before it is the norm after
  }

  protected update(_stats: AttentionStats): void {}
}

export const knorm = policyKind({
  schema: { name: 'knorm', doc: 'sanity baseline: drop the keys with the largest norm', paper: 'Devoto et al., A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression, EMNLP 2024 (arXiv:2406.11430)', params: BUDGET_PARAMS },
  create: (params, shape) => new KnormPolicy(params, shape),
  needsRows: true,
});
