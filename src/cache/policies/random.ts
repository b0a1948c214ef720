import { SEED_RANGE, seededRandom } from '../../util/random.js';
import { int, type Infer } from '../../util/schema.js';
import { BUDGET_PARAMS } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape } from '../policy.js';
import { ScorePolicy } from './base.js';

const PARAMS = { ...BUDGET_PARAMS, seed: int({ ...SEED_RANGE, default: 0, doc: 'random seed' }) };

/** Sanity baseline: each token gets a random score when it arrives; the lowest go. */
class RandomPolicy extends ScorePolicy<Infer<typeof PARAMS>> {
  readonly tailQueries = 0;
  readonly needsReceived = false;
  private random: () => number;

  constructor(params: Infer<typeof PARAMS>, shape: PolicyShape) {
    super(params, shape);
    this.random = seededRandom(params.seed);
  }

  override onAppend(layer: number, head: number, from: number, n: number): void {
    const d = this.score.of(layer, head);
    for (let s = from; s < from + n; s++) d[s] = this.random();
  }

  protected update(_stats: AttentionStats): void {}

  override reset(): void {
    super.reset();
    this.random = seededRandom(this.params.seed);
  }
}

export const random = policyKind({
  schema: { name: 'random', doc: 'sanity baseline: keep a random subset', params: PARAMS },
  create: (params, shape) => new RandomPolicy(params, shape),
});
