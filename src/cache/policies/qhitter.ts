import { budget, BUDGET_PARAMS, LayerBudgets, type Budget } from '../budget.js';
import { policyKind, type AttentionStats, type PolicyShape, type SlotView, type TokenRows } from '../policy.js';
import { UsageError } from '../../errors.js';
import { numbers, oneOf, optional, type Infer } from '../../util/schema.js';
import { BudgetPolicy, groupMean, SlotArrays } from './base.js';

/**
 * Q-Hitter (Zhang et al., MLSys'24), as the released code (VITA-Group/Q-Hitter,
 * utils/modify_llama.py) defines it:
 * - budgets fixed from the prompt length: `recent` newest tokens, `default` heavy hitters by
 *   accumulated attention, `heavy` more by the combined score; their sum is the budget;
 * - accumulated attention: each token's received probability summed over every query (as H2O);
 * - quantization friendliness: the L2 error of min-max quantizing each token's key and its value
 *   at `bits` (asymmetric, one scale and rounded zero point per row), each min-max normalised
 *   over the tokens that arrived together across all heads; friendliness = 1 − (ek + ev) / 2;
 * - combined score: alpha · minmax(accumulated) + (1 − alpha) · friendliness, the min and max
 *   taken over every head and live token of the layer;
 * - selection: the recent window, then the top `default` by accumulated attention, then the top
 *   `heavy` by the combined score among the rest; everything else goes;
 * - kept tokens stored packed at `bits`: without a codec in the spec, the cache uses the per-token
 *   int codec at `bits` (`defaultCodec`).
 *
 * Deviations from the released code:
 * - GQA: one token set per KV head; attention is the mean over its query heads (as kvpack's H2O).
 *   Friendliness and the accumulated-attention min-max are taken over KV heads.
 * - "Arrived together" is every token appended since the layer last chose: the whole prompt (as
 *   the released prefill), then one token per decode step (normalised across heads, as released).
 *   In ppl decode mode the tokens before the first eviction form the first group.
 * - Keys are measured before RoPE, which is what kvpack's quantized codecs store (the released
 *   code fake-quantizes rotated keys in place).
 * - Fractions resolve with kvpack's rounding (round, at least 1) instead of int(); heavy defaults
 *   to budget − default − recent, so qhitter(budget=0.2) keeps as many tokens as h2o(budget=0.2).
 * - Ties go to the older token (torch.topk leaves them unspecified); a flat min-max (max = min)
 *   gives 0 instead of NaN.
 * - `alpha` may be a list with one entry per layer.
 * Decode-time eviction is as released: after each generated token the layer holds budget + 1
 * and one token goes, chosen by the same three stages.
 */

/**
 * L2 norm of the error of min-max quantizing row[from, from + length) to `bits` (the released code's
 * Qerror, unnormalised).
 */
export function minmaxQuantError(row: ArrayLike<number>, bits: number, from = 0, length = row.length - from): number {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = from; i < from + length; i++) {
    lo = Math.min(lo, row[i]!);
    hi = Math.max(hi, row[i]!);
  }
  const maxInt = 2 ** bits - 1;
  const scale = Math.max(hi - lo, 1e-5) / maxInt;
  const zero = Math.min(maxInt, Math.max(0, -roundHalfEven(lo / scale)));
  let ss = 0;
  for (let i = from; i < from + length; i++) {
    const q = (Math.min(maxInt, Math.max(0, roundHalfEven(row[i]! / scale) + zero)) - zero) * scale;
    ss += (q - row[i]!) ** 2;
  }
  return Math.sqrt(ss);
}

/** torch.round: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** (x − min) / (max − min) over x[0, length), in place; a flat block becomes 0. */
export function minmaxNormalise(x: Float32Array | number[], length = x.length): void {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < length; i++) {
    lo = Math.min(lo, x[i]!);
    hi = Math.max(hi, x[i]!);
  }
  const span = hi - lo;
  for (let i = 0; i < length; i++) x[i] = span > 0 ? (x[i]! - lo) / span : 0;
}

/**
 * Friendliness of a block of tokens that arrived together, from their raw key and value errors:
 * 1 − (minmax(keyErrors) + minmax(valueErrors)) / 2, so 1 is the most quantization-friendly.
 */
export function friendliness(keyErrors: ArrayLike<number>, valueErrors: ArrayLike<number>): Float32Array {
  const k = Float32Array.from(keyErrors);
  friendlinessInPlace(k, Float32Array.from(valueErrors), k.length);
  return k;
}

/** friendliness() of keyErrors[0, length) and valueErrors[0, length), written over keyErrors. */
function friendlinessInPlace(keyErrors: Float32Array, valueErrors: Float32Array, length: number): void {
  minmaxNormalise(keyErrors, length);
  minmaxNormalise(valueErrors, length);
  for (let i = 0; i < length; i++) keyErrors[i] = 1 - (keyErrors[i]! + valueErrors[i]!) / 2;
}

const PARAMS = {
  budget: optional(budget({ doc: 'tokens kept per KV head in all (default 0.2 of the prompt; default + heavy + recent)' })),
  schedule: BUDGET_PARAMS.schedule,
  default: budget({ default: 0.07, doc: 'heavy hitters picked by accumulated attention alone' }),
  heavy: optional(budget({ doc: 'heavy hitters picked by the combined score (default budget − default − recent)' })),
  recent: budget({ default: 0.05, doc: 'newest tokens always kept' }),
  alpha: numbers({ min: 0, max: 1, default: 0.5, perLayer: true, doc: 'weight of attention against quantization friendliness, or a list per layer' }),
  bits: oneOf([2, 3, 4, 8], { default: 4, doc: 'bits of the friendliness measure and of the default int codec' }),
};
type Params = Infer<typeof PARAMS>;

class QHitterPolicy extends BudgetPolicy<Params & { budget: Budget }> {
  readonly tailQueries = 0;
  readonly needsReceived = true;
  private readonly accumulated: SlotArrays<Float32Array>;
  /** Per slot: the raw key and value errors until normalised, then [friendliness, value error]. */
  private readonly quality: SlotArrays<Float32Array>;
  /** Per layer: slots [0, settled) have their friendliness; later ones wait for the next choice. */
  private readonly settled: number[];
  private readonly accRange: { lo: number; hi: number }[];
  private readonly parts: { recent: LayerBudgets; default: LayerBudgets; heavy: LayerBudgets | undefined };
  private readonly bits: number;
  private readonly alpha: readonly number[];

  constructor(params: Params, shape: PolicyShape) {
    super({ ...params, budget: params.budget ?? 0.2 }, shape);
    this.accumulated = this.track(new SlotArrays((n) => new Float32Array(n), shape));
    this.quality = this.track(new SlotArrays((n) => new Float32Array(n), shape, 2));
    this.settled = new Array<number>(shape.numLayers).fill(0);
    this.accRange = Array.from({ length: shape.numLayers }, () => ({ lo: 0, hi: 0 }));
    const part = (v: Budget | undefined) => (v === undefined ? undefined : new LayerBudgets(v, shape.numLayers, 'uniform'));
    this.parts = { recent: part(params.recent)!, default: part(params.default)!, heavy: part(params.heavy) };
    this.bits = params.bits;
    this.alpha = typeof params.alpha === 'number' ? [params.alpha] : params.alpha;
  }

  override setPromptLength(tokens: number): void {
    super.setPromptLength(tokens);
    for (const p of [this.parts.recent, this.parts.default, this.parts.heavy]) p?.setPromptLength(tokens);
  }

  /** Tokens of each stage in a layer (Infinity each before the prompt length is known). */
  stages(layer: number): { recent: number; default: number; heavy: number } {
    const recent = this.parts.recent.forLayer(layer);
    const dflt = this.parts.default.forLayer(layer);
    const heavy = this.parts.heavy ? this.parts.heavy.forLayer(layer) : Math.max(0, super.budget(layer) - recent - dflt);
    return { recent, default: dflt, heavy };
  }

  override budget(layer: number): number {
    const s = this.stages(layer);
    return s.recent + s.default + s.heavy;
  }

  alphaOf(layer: number): number {
    return this.alpha[Math.min(layer, this.alpha.length - 1)]!;
  }

  override onAppend(layer: number, head: number, from: number, n: number, positions: Int32Array, rows: TokenRows | undefined): void {
    super.onAppend(layer, head, from, n, positions, rows);
    if (!rows) throw new Error('internal: qhitter needs the key and value rows');
    // slots at `from` and beyond were evicted or never settled
    this.settled[layer] = Math.min(this.settled[layer]!, from);
    const q = this.quality.of(layer, head);
    const d = rows.headDim;
    for (let t = 0; t < n; t++) {
      q[2 * (from + t)] = minmaxQuantError(rows.keys, this.bits, t * d, d);
      q[2 * (from + t) + 1] = minmaxQuantError(rows.values, this.bits, t * d, d);
    }
  }

  protected update(stats: AttentionStats): void {
    const mean = this.scratch(stats.capacity);
    let lo = Infinity;
    let hi = -Infinity;
    for (let h = 0; h < this.shape.numKvHeads; h++) {
      groupMean(stats.received, 0, h, stats, mean);
      const acc = this.accumulated.of(stats.layer, h);
      for (let s = 0; s < stats.length; s++) {
        acc[s] = acc[s]! + mean[s]!;
        lo = Math.min(lo, acc[s]!);
        hi = Math.max(hi, acc[s]!);
      }
    }
    // the released code normalises over the whole layer after each step, before evicting
    this.accRange[stats.layer] = { lo, hi };
  }

  /** Turns the raw errors of slots [settled, length) of every head of a layer into friendliness. */
  private settle(layer: number, length: number): void {
    const from = this.settled[layer]!;
    if (from >= length) return;
    const ke = this.pendingFriendliness(layer, length);
    const count = length - from;
    for (let h = 0; h < this.shape.numKvHeads; h++) {
      const q = this.quality.of(layer, h);
      for (let s = from; s < length; s++) q[2 * s] = ke[h * count + s - from]!;
    }
    this.settled[layer] = length;
  }

  /** Friendliness of slots [settled, length) of every head, [heads × count] in reused scratch; stores nothing. */
  private pendingFriendliness(layer: number, length: number): Float32Array {
    const from = this.settled[layer]!;
    const heads = this.shape.numKvHeads;
    const count = length - from;
    if (this.errors.keys.length < heads * count) this.errors = { keys: new Float32Array(heads * count), values: new Float32Array(heads * count) };
    const { keys: ke, values: ve } = this.errors;
    for (let h = 0; h < heads; h++) {
      const q = this.quality.of(layer, h);
      for (let s = from; s < length; s++) {
        ke[h * count + s - from] = q[2 * s]!;
        ve[h * count + s - from] = q[2 * s + 1]!;
      }
    }
    friendlinessInPlace(ke, ve, heads * count);
    return ke;
  }
  private errors = { keys: new Float32Array(0), values: new Float32Array(0) };

  /**
   * Friendliness of a head's live slots, into `out` (default: a new array). `settle` fixes the pending
   * ones first (as a choice does); without it they are scored as they would be now and nothing changes
   * (inspection must not steer eviction).
   */
  friendlinessOf(layer: number, head: number, length: number, out = new Float32Array(length), settle = true): Float32Array {
    if (settle) this.settle(layer, length);
    const q = this.quality.of(layer, head);
    const from = Math.min(this.settled[layer]!, length);
    for (let s = 0; s < from; s++) out[s] = q[2 * s]!;
    if (from < length) {
      const pending = this.pendingFriendliness(layer, length);
      for (let s = from; s < length; s++) out[s] = pending[head * (length - from) + s - from]!;
    }
    return out;
  }

  /** The combined score of a head's live slots (in a buffer reused by the next call); `settle` as friendlinessOf. */
  combinedOf(layer: number, head: number, length: number, settle = true): Float32Array {
    if (this.combined.length < length) this.combined = new Float32Array(length);
    const combined = this.friendlinessOf(layer, head, length, this.combined, settle);
    const acc = this.accumulated.of(layer, head);
    const { lo, hi } = this.accRange[layer]!;
    const alpha = this.alphaOf(layer);
    for (let s = 0; s < length; s++) combined[s] = alpha * (hi > lo ? (acc[s]! - lo) / (hi - lo) : 0) + (1 - alpha) * combined[s]!;
    return combined;
  }
  private combined = new Float32Array(0);

  protected scores(layer: number, head: number, view: SlotView): ArrayLike<number> {
    return this.combinedOf(layer, head, view.length);
  }

  readonly scoreName = 'combined score: alpha·attention + (1−alpha)·friendliness';
  heldScores(layer: number, head: number, length: number): ArrayLike<number> {
    return this.combinedOf(layer, head, length, false);
  }

  /** Slots in keeping order: recent window, default heavy hitters, combined-score heavy hitters, the rest. */
  keepOrder(layer: number, head: number, view: SlotView): number[] {
    const n = view.length;
    const stages = this.stages(layer);
    const acc = this.accumulated.of(layer, head);
    const combined = this.combinedOf(layer, head, n);
    const pos = view.positions;
    const byNewest = Array.from({ length: n }, (_, s) => s).sort((a, b) => pos[b]! - pos[a]!);
    const order = byNewest.slice(0, Math.min(n, stages.recent));
    const taken = new Uint8Array(n);
    for (const s of order) taken[s] = 1;
    // highest score first; ties to the older token
    const pick = (score: ArrayLike<number>, count: number) => {
      const rest = byNewest.filter((s) => !taken[s]).sort((a, b) => score[b]! - score[a]! || pos[a]! - pos[b]!);
      for (const s of rest.slice(0, count)) {
        taken[s] = 1;
        order.push(s);
      }
    };
    pick(acc, stages.default);
    pick(combined, stages.heavy);
    pick(combined, n);
    return order;
  }

  override choose(layer: number, head: number, count: number, view: SlotView, out: Int32Array): void {
    if (count <= 4 && this.fewToEvict(layer, head, count, view, out)) return;
    const order = this.keepOrder(layer, head, view);
    for (let i = 0; i < count; i++) out[i] = order[view.length - count + i]!;
  }

  /**
   * keepOrder's last `count` slots without sorting (decoding evicts one per step): the lowest
   * combined scores (ties: the newer) outside the recent window and the default heavy hitters,
   * written to out[0, count). False when the stages do not leave `count` slots to take from.
   */
  private fewToEvict(layer: number, head: number, count: number, view: SlotView, out: Int32Array): boolean {
    const n = view.length;
    const stages = this.stages(layer);
    if (n - stages.recent - stages.default < count) return false;
    const pos = view.positions;
    let newest = -Infinity;
    for (let s = 0; s < n; s++) newest = Math.max(newest, pos[s]!);
    const recentFrom = newest - stages.recent + 1;
    let inWindow = 0;
    for (let s = 0; s < n; s++) if (pos[s]! >= recentFrom) inWindow++;
    if (inWindow !== stages.recent) return false; // the window's positions are not contiguous
    const acc = this.accumulated.of(layer, head);
    const combined = this.combinedOf(layer, head, n);
    // 0 open, 1 evicted, 2 a default heavy hitter
    if (this.marks.length < n) this.marks = new Uint8Array(n);
    const mark = this.marks.fill(0, 0, n);
    for (let k = 0; k < count; ) {
      let worst = -1;
      for (let s = 0; s < n; s++) {
        if (mark[s] || pos[s]! >= recentFrom) continue;
        if (worst < 0 || combined[s]! < combined[worst]! || (combined[s] === combined[worst] && pos[s]! > pos[worst]!)) worst = s;
      }
      if (isDefaultHitter(worst, n, pos, recentFrom, acc, stages.default)) mark[worst] = 2;
      else {
        mark[worst] = 1;
        out[k++] = worst;
      }
    }
    return true;
  }
  private marks = new Uint8Array(0);

  override reset(): void {
    super.reset();
    this.settled.fill(0);
  }
}

/** Whether slot s is among the `count` highest accumulated attention (ties: the older) outside the recent window. */
function isDefaultHitter(s: number, n: number, pos: Int32Array, recentFrom: number, acc: Float32Array, count: number): boolean {
  let above = 0;
  for (let t = 0; t < n; t++) {
    if (t !== s && pos[t]! < recentFrom && (acc[t]! > acc[s]! || (acc[t] === acc[s] && pos[t]! < pos[s]!))) above++;
  }
  return above < count;
}

export const qhitter = policyKind({
  schema: {
    name: 'qhitter',
    doc: 'Q-Hitter: recent window + heavy hitters by attention + heavy hitters by attention and quantization friendliness, stored at `bits`',
    paper: 'Zhang et al., Q-Hitter: A Better Token Oracle for Efficient LLM Inference via Sparse-Quantized KV Cache, MLSys 2024',
    params: PARAMS,
  },
  create(params, shape) {
    const { budget, heavy } = params;
    if (budget !== undefined && heavy !== undefined) {
      const parts = [budget, params.default, heavy, params.recent];
      if (!parts.every((p) => typeof p === 'number') || Math.abs(parts[1]! + parts[2]! + parts[3]! - parts[0]!) > 1e-9) {
        throw new UsageError('qhitter: give budget (the total) or heavy (its share), or both with budget = default + heavy + recent');
      }
    }
    return new QHitterPolicy(params, shape);
  },
  needsRows: true,
  // FlexGen's group of 64, which the released code names as its real (non-simulated) quantizer
  defaultCodec: (params) => `int(bits=${params.bits},axis=token,group=64)`,
});
