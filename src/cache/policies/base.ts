import { budgetOfLayer, LayerBudgets, resolveCount, type Budget, type HeadSplit, type Schedule } from '../budget.js';
import { warnOnce } from '../../util/warn.js';
import type { AttentionStats, Policy, PolicyShape, SlotView, TokenRows } from '../policy.js';
import { selectFirst, type Order } from '../../util/select.js';

type Numbers = Float32Array | Uint8Array | Uint16Array | Int32Array;

/**
 * Per-(layer, KV head) arrays with `width` numbers per slot, kept aligned with the cache's slots:
 * moved when a slot moves, grown when the cache grows.
 */
export class SlotArrays<T extends Numbers> {
  readonly data: T[] = [];

  constructor(
    private readonly make: (length: number) => T,
    shape: PolicyShape,
    private readonly width = 1,
    private capacity = shape.capacity,
  ) {
    for (let i = 0; i < shape.numLayers * shape.numKvHeads; i++) this.data.push(make(capacity * width));
    this.heads = shape.numKvHeads;
  }
  private readonly heads: number;

  of(layer: number, head: number): T {
    return this.data[layer * this.heads + head]!;
  }

  move(layer: number, head: number, from: number, to: number): void {
    const a = this.of(layer, head);
    a.copyWithin(to * this.width, from * this.width, (from + 1) * this.width);
  }

  clear(layer: number, head: number, from: number, n: number): void {
    this.of(layer, head).fill(0, from * this.width, (from + n) * this.width);
  }

  resize(capacity: number): void {
    for (let i = 0; i < this.data.length; i++) {
      const next = this.make(capacity * this.width);
      next.set(this.data[i]!.subarray(0, Math.min(capacity, this.capacity) * this.width) as never);
      this.data[i] = next;
    }
    this.capacity = capacity;
  }

  /** Bytes of state per slot of one head. */
  get bytesPerSlot(): number {
    return this.width * this.data[0]!.BYTES_PER_ELEMENT;
  }

  reset(): void {
    for (const a of this.data) a.fill(0);
  }
}

/** Fewer tokens than this per KV head, resolved from a fraction, earn a warning. */
const MIN_USEFUL_BUDGET = 4;

const isFraction = (b: Budget | undefined) => b !== undefined && (typeof b === 'number' ? b < 1 : b.some((x) => x < 1));

/** What every budgeted policy reads from its spec. */
export interface BudgetParams {
  budget: Budget;
  schedule: Schedule;
  recent?: Budget;
  heads?: HeadSplit;
  floor?: number;
}

/**
 * What most policies share: a budget per layer, an optional recent window that is never evicted,
 * per-slot state that moves with the slots. A subclass scores slots; the lowest scores go.
 */
export abstract class BudgetPolicy<P extends BudgetParams = BudgetParams> implements Policy {
  readonly evicts = true;
  abstract readonly tailQueries: number;
  abstract readonly needsReceived: boolean;
  protected readonly budgets: LayerBudgets;
  protected promptLength = 0;
  protected readonly states: SlotArrays<Numbers>[] = [];
  /** States kept aligned with the slots but not counted in `bytes` (transient scores, inspection). */
  private readonly uncounted = new Set<SlotArrays<Numbers>>();

  constructor(protected readonly params: P, protected readonly shape: PolicyShape) {
    this.budgets = LayerBudgets.from(params, shape.numLayers);
  }

  /** Keeps per-slot arrays cleared, moved, grown and reset with the slots; `counted`: part of the cache's bytes. */
  protected track<T extends Numbers>(arrays: SlotArrays<T>, counted = true): SlotArrays<T> {
    this.states.push(arrays);
    if (!counted) this.uncounted.add(arrays);
    return arrays;
  }

  budget(layer: number): number {
    return this.budgets.forLayer(layer);
  }

  target(layer: number): number {
    return this.budget(layer);
  }

  setPromptLength(tokens: number): void {
    this.promptLength = tokens;
    this.budgets.setPromptLength(tokens);
    this.warnIfTiny(tokens);
  }

  /** A fraction of a short prompt can resolve to a token or two, which silently degenerates. */
  private warnIfTiny(tokens: number): void {
    if (!isFraction(this.params.budget) && !isFraction(this.params.recent)) return;
    let least = Infinity;
    for (let l = 0; l < this.shape.numLayers; l++) least = Math.min(least, this.budget(l));
    if (least >= MIN_USEFUL_BUDGET || least >= tokens) return;
    warnOnce(
      'tiny-budget',
      `a budget given as a fraction of the prompt keeps ${least} token${least === 1 ? '' : 's'} per KV head of a ${tokens}-token prompt; ` +
        'give a token count (e.g. budget=64) or a longer prompt',
    );
  }

  /** The `recent` parameter in tokens (a count or a fraction of the prompt length); 0 when absent. */
  protected recentTokens(layer: number): number {
    const r = this.params.recent;
    return r === undefined ? 0 : resolveCount(budgetOfLayer(r, layer), this.promptLength);
  }

  /** A reusable buffer of at least `length` numbers for per-step arithmetic. */
  protected scratch(length: number): Float32Array {
    if (this.scratchBuffer.length < length) this.scratchBuffer = new Float32Array(length);
    return this.scratchBuffer;
  }
  private scratchBuffer = new Float32Array(0);

  onAppend(layer: number, head: number, from: number, n: number, _positions: Int32Array, _rows: TokenRows | undefined): void {
    for (const s of this.states) s.clear(layer, head, from, n);
  }

  observe(stats: AttentionStats): void {
    this.update(stats);
  }

  /** Folds one step's attention into the per-slot state. */
  protected abstract update(stats: AttentionStats): void;

  /** The score of each live slot of a head: the lowest go first. */
  protected abstract scores(layer: number, head: number, view: SlotView): ArrayLike<number>;

  choose(layer: number, head: number, count: number, view: SlotView, out: Int32Array): void {
    lowestUnprotected(this.scores(layer, head, view), view, count, this.protectedFrom(layer, view), out);
  }

  get raggedHeads(): boolean {
    return this.params.heads === 'adakv';
  }

  /**
   * AdaKV as kvpress runs it over any scorer: in each head the top ⌊floor·target⌋ scores (at least
   * one) and the recent window are safe; of the rest, the `count` lowest of all the layer's heads
   * together go, so a head whose scores are flat gives its room to one whose scores are peaked.
   */
  chooseHeads(layer: number, count: number, views: readonly SlotView[], out: readonly Int32Array[], counts: Int32Array): void {
    const safe = Math.max(1, Math.floor((this.params.floor ?? 0) * this.target(layer)));
    const all = this.adaptive.reset(views);
    for (let h = 0; h < views.length; h++) {
      const view = views[h]!;
      all.add(h, this.scores(layer, h, view), view, this.protectedFrom(layer, view), safe);
    }
    all.lowest(count, out, counts);
  }
  private readonly adaptive = new HeadPool();

  /** Slots whose position is at or above this are protected (the recent window). */
  protected protectedFrom(layer: number, view: SlotView): number {
    const recent = this.recentTokens(layer);
    if (recent <= 0) return Infinity;
    let newest = -1;
    for (let s = 0; s < view.length; s++) newest = Math.max(newest, view.positions[s]!);
    return newest - recent + 1;
  }

  move(layer: number, head: number, from: number, to: number): void {
    for (const s of this.states) s.move(layer, head, from, to);
  }

  bytes(lengths: readonly number[]): number {
    const perSlot = this.states.reduce((sum, s) => sum + (this.uncounted.has(s) ? 0 : s.bytesPerSlot), 0);
    const slots = lengths.reduce((a, b) => a + b, 0) * this.shape.numKvHeads;
    return perSlot * slots;
  }

  resize(capacity: number): void {
    for (const s of this.states) s.resize(capacity);
  }

  reset(): void {
    for (const s of this.states) s.reset();
  }
}

/**
 * A budget policy whose state is one f32 score per slot (a policy is its score, as in kvpress's
 * ScorerPress): a subclass writes `score` as tokens arrive (`onAppend`) or attention is observed
 * (`update`). Given a `scoreName`, the trace shows the held scores under that name.
 */
export abstract class ScorePolicy<P extends BudgetParams = BudgetParams> extends BudgetPolicy<P> {
  protected readonly score: SlotArrays<Float32Array>;
  readonly heldScores?: (layer: number, head: number, length: number) => ArrayLike<number>;

  constructor(params: P, shape: PolicyShape, readonly scoreName?: string) {
    super(params, shape);
    this.score = this.track(new SlotArrays((n) => new Float32Array(n), shape));
    if (scoreName !== undefined) this.heldScores = (layer, head, length) => this.score.of(layer, head).subarray(0, length);
  }

  protected scores(layer: number, head: number, _view: SlotView): ArrayLike<number> {
    return this.score.of(layer, head);
  }
}

/**
 * Writes to out[0, count) the `count` slots with the lowest score among those whose position is
 * below `protectedFrom`; ties go to the older token. If too few are unprotected, the oldest
 * protected ones follow.
 */
export function lowestUnprotected(scores: ArrayLike<number>, view: SlotView, count: number, protectedFrom: number, out: Int32Array): void {
  const order = SLOT_ORDER.set(scores, view.positions, protectedFrom);
  if (count <= 4) {
    // decoding evicts one token per step: a few linear scans
    for (let k = 0; k < count; k++) {
      let best = -1;
      for (let s = 0; s < view.length; s++) if (!among(out, k, s) && (best < 0 || order.before(s, best))) best = s;
      out[k] = best;
    }
    return;
  }
  if (selectScratch.length < view.length) selectScratch = new Int32Array(view.length);
  const slots = selectScratch;
  for (let s = 0; s < view.length; s++) slots[s] = s;
  selectFirst(slots, view.length, count, order);
  for (let i = 0; i < count; i++) out[i] = slots[i]!;
}

function among(xs: Int32Array, count: number, x: number): boolean {
  for (let i = 0; i < count; i++) if (xs[i] === x) return true;
  return false;
}

/** The eviction order of lowestUnprotected: unprotected before protected, then by score, then older first. */
class SlotOrder implements Order {
  private scores: ArrayLike<number> = [];
  private positions: ArrayLike<number> = [];
  private protectedFrom = Infinity;

  set(scores: ArrayLike<number>, positions: ArrayLike<number>, protectedFrom: number): this {
    this.scores = scores;
    this.positions = positions;
    this.protectedFrom = protectedFrom;
    return this;
  }

  /** Whether slot a goes before slot b (a strict total order: positions are distinct). */
  before(a: number, b: number): boolean {
    const pa = this.positions[a]! >= this.protectedFrom;
    if (pa !== this.positions[b]! >= this.protectedFrom) return !pa;
    if (!pa && this.scores[a] !== this.scores[b]) return this.scores[a]! < this.scores[b]!;
    return this.positions[a]! < this.positions[b]!;
  }
}

const SLOT_ORDER = new SlotOrder();

/**
 * The slots of a layer's KV heads in one pool, for AdaKV's joint choice. Each entry has a tier
 * (0: may go; 1: the head's safeguard or recent window; 2: the head's best slot, which never goes),
 * then a score and a position: the lowest tier, score, position go first.
 */
class HeadPool implements Order {
  private tier = new Uint8Array(0);
  private score = new Float32Array(0);
  private position = new Int32Array(0);
  private head = new Int32Array(0);
  private slot = new Int32Array(0);
  private items = new Int32Array(0);
  private size = 0;

  reset(views: readonly SlotView[]): this {
    const total = views.reduce((sum, v) => sum + v.length, 0);
    if (this.tier.length < total) {
      this.tier = new Uint8Array(total);
      this.score = new Float32Array(total);
      this.position = new Int32Array(total);
      this.head = new Int32Array(total);
      this.slot = new Int32Array(total);
      this.items = new Int32Array(total);
    }
    this.size = 0;
    return this;
  }

  /** Adds a head's slots: the `safe` best of its unprotected ones and those at or past `protectedFrom` get tier 1, its best tier 2. */
  add(head: number, scores: ArrayLike<number>, view: SlotView, protectedFrom: number, safe: number): void {
    const base = this.size;
    for (let s = 0; s < view.length; s++) {
      const e = base + s;
      this.score[e] = scores[s]!;
      this.position[e] = view.positions[s]!;
      this.head[e] = head;
      this.slot[e] = s;
      this.tier[e] = view.positions[s]! >= protectedFrom ? 1 : 0;
      this.items[s] = e;
    }
    this.size += view.length;
    const best = Math.min(safe, view.length);
    if (best === 0) return;
    // the head's highest scores first (newer first on ties): the reverse of the eviction order
    selectFirst(this.items, view.length, best, { before: (a, b) => this.before(b, a) });
    for (let i = 0; i < best; i++) this.tier[this.items[i]!] = Math.max(1, this.tier[this.items[i]!]!);
    let top = this.items[0]!;
    for (let i = 1; i < best; i++) if (this.before(top, this.items[i]!)) top = this.items[i]!;
    this.tier[top] = 2;
  }

  /** Writes the `count` entries that go first to out[head][0, counts[head]). */
  lowest(count: number, out: readonly Int32Array[], counts: Int32Array): void {
    counts.fill(0);
    const items = this.items;
    for (let e = 0; e < this.size; e++) items[e] = e;
    const k = Math.min(count, this.size);
    if (k > 0) selectFirst(items, this.size, k, this);
    for (let i = 0; i < k; i++) {
      const e = items[i]!;
      const h = this.head[e]!;
      out[h]![counts[h]!++] = this.slot[e]!;
    }
  }

  before(a: number, b: number): boolean {
    if (this.tier[a] !== this.tier[b]) return this.tier[a]! < this.tier[b]!;
    if (this.score[a] !== this.score[b]) return this.score[a]! < this.score[b]!;
    return this.position[a]! < this.position[b]!;
  }
}
let selectScratch = new Int32Array(0);

/** Mean over the query heads of KV head `head` of a [numHeads × capacity] row block, for live slots. */
export function groupMean(rows: Float32Array, offset: number, head: number, stats: AttentionStats, out: Float32Array): Float32Array {
  out.fill(0, 0, stats.length);
  for (let g = 0; g < stats.group; g++) {
    const base = offset + (head * stats.group + g) * stats.capacity;
    for (let s = 0; s < stats.length; s++) out[s] = out[s]! + rows[base + s]!;
  }
  for (let s = 0; s < stats.length; s++) out[s] = out[s]! / stats.group;
  return out;
}

/** The L2 norm of row t of [n × d] rows (RoPE rotates pairs, so a key's norm before it is its norm after). */
export function rowNorm(rows: Float32Array, t: number, d: number): number {
  let ss = 0;
  for (let i = 0; i < d; i++) ss += rows[t * d + i]! ** 2;
  return Math.sqrt(ss);
}

/** What a cut keeps so that `every` tokens can arrive before the next: the budget less that, at most half of it, at least 1. */
export function leavingRoom(budget: number, every: number): number {
  return Math.max(1, budget - Math.min(every, Math.floor(budget / 2)));
}
