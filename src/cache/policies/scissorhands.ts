import { BUDGET_PARAMS } from '../budget.js';
import type { AttentionStats, PolicyKind, PolicyShape } from '../policy.js';
import type { ParamValue } from '../spec.js';
import { BudgetPolicy, SlotArrays } from './base.js';
import { AttentionHistory } from './history.js';

/**
 * Scissorhands (persistence of importance): over the last `window` attention steps, count how often
 * each token received less than the uniform share 1/t of attention (t = tokens the query saw).
 * Tokens that keep being unimportant stay unimportant: when the cache exceeds its budget, the `drop`
 * tokens with the highest counts go at once (amortised), except the `recent` newest.
 */
class ScissorhandsPolicy extends BudgetPolicy {
  readonly needsReceived = false;
  readonly tailQueries: number;
  private readonly history: AttentionHistory<Uint8Array>;
  private readonly lowCounts: SlotArrays<Uint16Array>;

  constructor(params: Record<string, ParamValue>, shape: PolicyShape) {
    super(params, shape);
    this.tailQueries = params.window as number;
    this.history = new AttentionHistory((n) => new Uint8Array(n), shape, this.tailQueries, (p, seen) => (p < 1 / seen ? 1 : 0));
    this.track(this.history.ring);
    this.lowCounts = this.track(new SlotArrays((n) => new Uint16Array(n), shape));
  }

  override target(layer: number): number {
    return Math.max(1, this.budget(layer) + 1 - (this.params.drop as number));
  }

  protected update(stats: AttentionStats): void {
    this.history.add(stats, this.shape.numKvHeads, this.scratch(stats.capacity), (h, s, old, value) => {
      const counts = this.lowCounts.of(stats.layer, h);
      counts[s] = counts[s]! + value - old;
    });
  }

  /** Highest count goes first, so the score is the negated count. */
  protected scores(layer: number, head: number, view: { length: number }): ArrayLike<number> {
    const counts = this.lowCounts.of(layer, head);
    return Array.from(counts.subarray(0, view.length), (c) => -c);
  }

  override reset(): void {
    super.reset();
    this.history.reset();
  }
}

export const scissorhands: PolicyKind = {
  schema: {
    name: 'scissorhands',
    doc: 'Scissorhands: drop the tokens most often below the uniform attention share in a history window',
    params: {
      ...BUDGET_PARAMS,
      window: { type: { kind: 'int', min: 1, max: 1024 }, default: 64, doc: 'attention steps of history counted' },
      recent: { type: { kind: 'budget' }, default: 16, doc: 'newest tokens never dropped' },
      drop: { type: { kind: 'int', min: 1 }, default: 32, doc: 'tokens dropped at once when over budget' },
    },
  },
  create: (params, shape) => new ScissorhandsPolicy(params, shape),
};
