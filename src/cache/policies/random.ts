import { seededRandom } from '../../sample.js';
import { BUDGET_PARAMS } from '../budget.js';
import type { AttentionStats, PolicyKind, PolicyShape } from '../policy.js';
import type { ParamValue } from '../spec.js';
import { BudgetPolicy, SlotArrays } from './base.js';

/** Sanity baseline: each token gets a random score when it arrives; the lowest go. */
class RandomPolicy extends BudgetPolicy {
  readonly tailQueries = 0;
  readonly needsReceived = false;
  private readonly draw: SlotArrays<Float32Array>;
  private random: () => number;

  constructor(params: Record<string, ParamValue>, shape: PolicyShape) {
    super(params, shape);
    this.draw = this.track(new SlotArrays((n) => new Float32Array(n), shape));
    this.random = seededRandom(params.seed as number);
  }

  override onAppend(layer: number, head: number, from: number, n: number): void {
    const d = this.draw.of(layer, head);
    for (let s = from; s < from + n; s++) d[s] = this.random();
  }

  protected update(_stats: AttentionStats): void {}

  protected scores(layer: number, head: number): ArrayLike<number> {
    return this.draw.of(layer, head);
  }

  override reset(): void {
    super.reset();
    this.random = seededRandom(this.params.seed as number);
  }
}

export const random: PolicyKind = {
  schema: {
    name: 'random',
    doc: 'sanity baseline: keep a random subset',
    params: { ...BUDGET_PARAMS, seed: { type: { kind: 'int', min: 0 }, default: 0, doc: 'random seed' } },
  },
  create: (params, shape) => new RandomPolicy(params, shape),
};
