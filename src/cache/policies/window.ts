import { budget, budgetOfLayer, resolveCount } from '../budget.js';
import { policyKind, type AttentionStats, type SlotView } from '../policy.js';
import { int, type Infer } from '../../util/schema.js';
import { BudgetPolicy, type BudgetParams } from './base.js';

const PARAMS = {
  sinks: int({ min: 0, default: 4, doc: 'first tokens always kept' }),
  recent: budget({ doc: 'most recent tokens kept (count or fraction of the prompt)' }),
};

/**
 * StreamingLLM: the first `sinks` tokens (attention sinks) and the `recent` most recent ones.
 * The budget is sinks + recent; the oldest non-sink token goes first.
 */
class WindowPolicy extends BudgetPolicy<Infer<typeof PARAMS> & BudgetParams> {
  readonly tailQueries = 0;
  readonly needsReceived = false;

  override budget(layer: number): number {
    return this.params.sinks + resolveCount(budgetOfLayer(this.params.recent, layer), this.promptLength);
  }

  protected update(_stats: AttentionStats): void {}

  /** Sinks score highest (never chosen while others remain); otherwise older = lower. */
  protected scores(_layer: number, _head: number, view: SlotView): ArrayLike<number> {
    const sinks = this.params.sinks;
    const scores = this.scratch(view.length);
    for (let s = 0; s < view.length; s++) scores[s] = view.positions[s]! < sinks ? Infinity : view.positions[s]!;
    return scores;
  }

  protected override protectedFrom(_layer: number, _view: SlotView): number {
    return Infinity;
  }
}

export const window = policyKind({
  schema: { name: 'window', doc: 'StreamingLLM: attention sinks + a recent window', paper: 'Xiao et al., Efficient Streaming Language Models with Attention Sinks, ICLR 2024 (arXiv:2309.17453)', params: PARAMS },
  create: (params, shape) => new WindowPolicy({ ...params, budget: params.recent, schedule: 'uniform' }, shape),
});
