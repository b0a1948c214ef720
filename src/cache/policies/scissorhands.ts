import { budget, BUDGET_PARAMS, type Budget } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape } from '../policy.js';
import { UsageError } from '../../errors.js';
import { int, numbers, oneOf, optional, type Infer } from '../../util/schema.js';
import { BudgetPolicy, groupMean, SlotArrays } from './base.js';
import { ScissorhandsReleased } from './scissorhands-released.js';

/**
 * Scissorhands (persistence of importance): over the last `window` attention steps, count how often
 * each token received less than the uniform share 1/t of attention (t = tokens the query saw).
 * Tokens that keep being unimportant stay unimportant: when the cache exceeds its budget, the `drop`
 * tokens with the highest counts go at once (amortised), except the `recent` newest.
 *
 * Each slot keeps its last `window` low/high bits as a bit ring (all slots of a layer advance
 * together) and their running count, so the state is window/8 + 2 bytes per slot.
 */
// no heads=adakv: a step's history counts a slot as seen by its index, which holds only when every head holds as many
const { heads: _heads, floor: _floor, ...LAYER_BUDGET } = BUDGET_PARAMS;

const PARAMS = {
  mode: oneOf(['paper', 'reference'], { default: 'paper', doc: 'paper: the algorithm with a fixed budget; reference: the released evaluation code (masks, adaptive budget)' }),
  ...LAYER_BUDGET,
  budget: optional(BUDGET_PARAMS.budget),
  window: int({ min: 1, max: 1024, default: 64, doc: 'attention steps of history counted' }),
  recent: optional(budget({ doc: 'newest tokens never dropped (default 16, at most a quarter of the budget)' })),
  drop: int({ min: 1, optional: true, doc: 'tokens dropped at once when over budget (default a tenth of the budget)' }),
  lru_window: int({ min: 1, max: 4096, default: 100, doc: 'reference mode: query rows counted' }),
  position_window: int({ min: 0, default: 10, doc: 'reference mode: newest positions never hidden' }),
  start: int({ min: 0, default: 100, doc: 'reference mode: first query position that is masked' }),
  layers: numbers({ min: 0, default: [5, 35], doc: 'reference mode: compressed layers, [first,last]' }),
};
type Params = Infer<typeof PARAMS> & { budget: Budget };

class ScissorhandsPolicy extends BudgetPolicy<Params> {
  readonly needsReceived = false;
  readonly tailQueries: number;
  private readonly bits: SlotArrays<Uint8Array>;
  private readonly lowCounts: SlotArrays<Uint16Array>;
  private readonly steps: Int32Array;
  private readonly bytesPerRing: number;

  constructor(params: Params, shape: PolicyShape) {
    super(params, shape);
    this.tailQueries = params.window;
    this.bytesPerRing = Math.ceil(this.tailQueries / 8);
    this.bits = this.track(new SlotArrays((n) => new Uint8Array(n), shape, this.bytesPerRing));
    this.lowCounts = this.track(new SlotArrays((n) => new Uint16Array(n), shape));
    this.steps = new Int32Array(shape.numLayers);
  }

  /** Without `drop`, a tenth of the budget goes at each cut. */
  override target(layer: number): number {
    const budget = this.budget(layer);
    const drop = this.params.drop ?? Math.max(1, Math.floor(budget / 10));
    return Math.max(1, budget + 1 - drop);
  }

  /** Without `recent`, the 16 newest tokens (at most a quarter of the budget) are protected. */
  protected override recentTokens(layer: number): number {
    return this.params.recent === undefined ? Math.min(16, Math.floor(this.budget(layer) / 4)) : super.recentTokens(layer);
  }

  /** Each tail row is one step; slots a query could not see (newer tokens) record "not low". */
  protected update(stats: AttentionStats): void {
    const mean = this.scratch(stats.capacity);
    const rowStride = this.shape.numKvHeads * stats.group * stats.capacity;
    for (let r = 0; r < stats.tailRows; r++) {
      const seen = stats.length - (stats.tailRows - 1 - r);
      const index = this.steps[stats.layer]! % this.tailQueries;
      this.steps[stats.layer] = this.steps[stats.layer]! + 1;
      const byte = index >> 3;
      const mask = 1 << (index & 7);
      for (let h = 0; h < this.shape.numKvHeads; h++) {
        groupMean(stats.tail, r * rowStride, h, stats, mean);
        const bits = this.bits.of(stats.layer, h);
        const counts = this.lowCounts.of(stats.layer, h);
        for (let s = 0; s < stats.length; s++) {
          const at = s * this.bytesPerRing + byte;
          const was = (bits[at]! & mask) !== 0;
          const low = s < seen && mean[s]! < 1 / seen;
          if (low === was) continue;
          bits[at] = low ? bits[at]! | mask : bits[at]! & ~mask;
          counts[s] = counts[s]! + (low ? 1 : -1);
        }
      }
    }
  }

  /** Highest count goes first, so the score is the negated count. */
  protected scores(layer: number, head: number, view: { length: number }): ArrayLike<number> {
    const counts = this.lowCounts.of(layer, head);
    const scores = this.scratch(view.length);
    for (let s = 0; s < view.length; s++) scores[s] = -counts[s]!;
    return scores;
  }

  readonly scoreName = 'low-attention count';
  heldScores(layer: number, head: number, length: number): ArrayLike<number> {
    return this.lowCounts.of(layer, head).subarray(0, length);
  }

  override reset(): void {
    super.reset();
    this.steps.fill(0);
  }
}

export const scissorhands = policyKind({
  schema: {
    name: 'scissorhands',
    doc: 'Scissorhands: drop the tokens most often below the uniform attention share in a history window',
    paper: 'Liu et al., Scissorhands: Exploiting the Persistence of Importance Hypothesis for LLM KV Cache Compression at Test Time, NeurIPS 2023 (arXiv:2305.17118)',
    params: PARAMS,
  },
  create: (params, shape) => {
    if (params.mode === 'reference') return new ScissorhandsReleased(params, shape);
    const { budget } = params;
    if (budget === undefined) throw new UsageError('scissorhands needs budget (or mode=reference, whose budget is adaptive)');
    return new ScissorhandsPolicy({ ...params, budget }, shape);
  },
});
