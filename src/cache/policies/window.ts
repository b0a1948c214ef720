import { resolveCount } from '../budget.js';
import type { AttentionStats, PolicyKind, SlotView } from '../policy.js';
import { BudgetPolicy } from './base.js';

/**
 * StreamingLLM: the first `sinks` tokens (attention sinks) and the `recent` most recent ones.
 * The budget is sinks + recent; the oldest non-sink token goes first.
 */
class WindowPolicy extends BudgetPolicy {
  readonly tailQueries = 0;
  readonly needsReceived = false;

  override budget(): number {
    return (this.params.sinks as number) + resolveCount(this.params.recent as number, this.reference);
  }

  protected update(_stats: AttentionStats): void {}

  /** Sinks score highest (never chosen while others remain); otherwise older = lower. */
  protected scores(_layer: number, _head: number, view: SlotView): ArrayLike<number> {
    const sinks = this.params.sinks as number;
    const scores = this.scratch(view.length);
    for (let s = 0; s < view.length; s++) scores[s] = view.positions[s]! < sinks ? Infinity : view.positions[s]!;
    return scores;
  }

  protected override protectedFrom(_layer: number, _view: SlotView): number {
    return Infinity;
  }
}

export const window: PolicyKind = {
  schema: {
    name: 'window',
    doc: 'StreamingLLM: attention sinks + a recent window',
    params: {
      sinks: { type: { kind: 'int', min: 0 }, default: 4, doc: 'first tokens always kept' },
      recent: { type: { kind: 'budget' }, doc: 'most recent tokens kept (count or fraction of the prompt)' },
    },
  },
  create: (params, shape) => new WindowPolicy({ ...params, budget: params.recent!, schedule: 'uniform' }, shape),
};
