import { budget, BUDGET_PARAMS } from '../budget.js';
import type { Rope } from '../../kernels/rope.js';
import { policyKind, type AttentionStats, type PolicyShape, type SlotView, type TokenRows } from '../policy.js';
import { bool, int, number, optional, type Infer } from '../../util/schema.js';
import { BudgetPolicy, leavingRoom, rowNorm, SlotArrays } from './base.js';

const PARAMS = {
  ...BUDGET_PARAMS,
  recent: optional(budget({ doc: 'newest tokens always kept (count or fraction of the prompt; default none)' })),
  queries: int({ min: 2, max: 8192, default: 256, doc: 'the most recent queries whose mean and covariance stand for the queries to come' }),
  future: int({ min: 1, max: 1 << 20, default: 512, doc: 'positions to come that RoPE is averaged over' }),
  every: int({ min: 0, max: 65536, default: 0, doc: 'tokens that may arrive between cuts: a cut keeps that many fewer than the budget (at most half of it); scoring is O(n·d²) per head, so a cut every token is slow on wide heads' }),
  sinks: int({ min: 0, max: 1024, default: 4, doc: 'first tokens always kept, and their queries left out of the statistics' }),
  epsilon: number({ min: 0, max: 1, default: 0, doc: "added to each token's expected attention before the value norm weighs it" }),
  covariance: bool({ default: true, doc: "the queries' covariance term (false: the mean alone)" }),
  vnorm: bool({ default: true, doc: "weigh by each token's value norm" }),
};

type Params = Infer<typeof PARAMS>;

/**
 * Expected Attention (Devoto et al., arXiv:2510.00636, as kvpress's ExpectedAttentionPress): the
 * queries to come are taken as Gaussian, with the mean μ and covariance Σ of the recent queries
 * before RoPE, rotated by RoPE averaged over the next `future` positions (R̄, a closed form per
 * frequency). A key k's expected logit is then log E[exp(s·q·k)] = s·μ'·k + s²·kᵀΣ'k/2 with
 * μ' = R̄μ, Σ' = R̄ΣR̄ᵀ and s the model's score scale; softmax over the held keys, averaged over the
 * query heads of the KV head, plus epsilon, times ‖v‖. Sinks are kept. Scores are computed when a
 * layer is cut, from the keys the codec stores; queries are kept in a ring per query head.
 */
class ExpectedAttentionPolicy extends BudgetPolicy<Params> {
  readonly tailQueries = 0;
  readonly needsReceived = false;
  private readonly vnorms: SlotArrays<Float32Array>;
  /** For inspection (the trace): each slot's score at the last cut, 0 for tokens since; not counted in bytes. */
  private readonly lastScores: SlotArrays<Float32Array>;
  private readonly rope: Rope;
  private readonly headDim: number;
  private readonly numHeads: number;
  /** Per (layer, query head): the last `queries` queries before RoPE, a ring of rows. */
  private readonly rings: Float32Array[] = [];
  private readonly filled: Int32Array;
  private readonly next: Int32Array;
  private readonly queryStats: QueryStats;

  constructor(params: Params, shape: PolicyShape) {
    super(params, shape);
    if (!shape.rope) throw new Error('internal: expected attention needs the model\'s RoPE');
    this.rope = shape.rope;
    this.headDim = shape.rope.headDim;
    this.numHeads = shape.numHeads ?? shape.numKvHeads;
    this.vnorms = this.track(new SlotArrays((n) => new Float32Array(n), shape));
    this.lastScores = this.track(new SlotArrays((n) => new Float32Array(n), shape), false);
    for (let i = 0; i < shape.numLayers * this.numHeads; i++) this.rings.push(new Float32Array(params.queries * this.headDim));
    this.filled = new Int32Array(shape.numLayers * this.numHeads);
    this.next = new Int32Array(shape.numLayers * this.numHeads);
    this.queryStats = new QueryStats(this.headDim);
  }

  override target(layer: number): number {
    return leavingRoom(this.budget(layer), this.params.every);
  }

  override onAppend(layer: number, head: number, from: number, n: number, positions: Int32Array, rows: TokenRows | undefined): void {
    if (!rows) throw new Error('internal: expected attention needs the value rows');
    const norms = this.vnorms.of(layer, head);
    super.onAppend(layer, head, from, n, positions, rows);
    for (let t = 0; t < n; t++) norms[from + t] = rowNorm(rows.values, t, rows.headDim);
  }

  observeQueries(layer: number, queries: Float32Array, n: number, positions: Int32Array): void {
    const d = this.headDim;
    for (let t = 0; t < n; t++) {
      if (positions[t]! < this.params.sinks) continue;
      for (let j = 0; j < this.numHeads; j++) {
        const index = layer * this.numHeads + j;
        const ring = this.rings[index]!;
        const at = this.next[index]! * d;
        ring.set(queries.subarray((t * this.numHeads + j) * d, (t * this.numHeads + j + 1) * d), at);
        this.rope.rotate(ring, at, -positions[t]!); // back to before RoPE
        this.next[index] = (this.next[index]! + 1) % this.params.queries;
        this.filled[index] = Math.min(this.filled[index]! + 1, this.params.queries);
      }
    }
  }

  protected update(_stats: AttentionStats): void {}

  protected scores(layer: number, head: number, view: SlotView): ArrayLike<number> {
    if (!view.key) throw new Error('internal: expected attention reads the stored keys');
    const n = view.length;
    const out = this.scratch(2 * n);
    const logits = out.subarray(n, 2 * n);
    out.fill(0, 0, n);
    let next = 0;
    for (let s = 0; s < n; s++) next = Math.max(next, view.positions[s]! + 1);
    const keys = Array.from({ length: n }, (_, s) => view.key!(s));
    const group = this.numHeads / this.shape.numKvHeads;
    const mean = averagedRope(this.rope, next, this.params.future);
    let used = 0;
    for (let g = 0; g < group; g++) {
      const index = layer * this.numHeads + head * group + g;
      const filled = this.filled[index]!;
      if (filled === 0) continue;
      used++;
      this.queryStats.from(this.rings[index]!, filled, this.params.covariance);
      expectedLogits(this.queryStats, mean, this.rope, keys, logits);
      softmaxInto(logits, n, out);
    }
    const norms = this.vnorms.of(layer, head);
    let top = -Infinity;
    for (let s = 0; s < n; s++) {
      const p = used > 0 ? out[s]! / used : 0;
      out[s] = (p + this.params.epsilon) * (this.params.vnorm ? norms[s]! : 1);
      top = Math.max(top, out[s]!);
    }
    for (let s = 0; s < n; s++) if (view.positions[s]! < this.params.sinks) out[s] = top + 1;
    this.lastScores.of(layer, head).set(out.subarray(0, n));
    return out.subarray(0, n);
  }

  readonly scoreName = 'expected attention × ‖v‖ at the last cut (0: arrived since)';
  heldScores(layer: number, head: number, length: number): ArrayLike<number> {
    return this.lastScores.of(layer, head).subarray(0, length);
  }

  override reset(): void {
    super.reset();
    this.filled.fill(0);
    this.next.fill(0);
  }

  note(): string {
    const kib = (this.rings.length * this.params.queries * this.headDim * 4) / 1024;
    return `expected attention also holds the last ${this.params.queries} queries of every query head (${kib.toFixed(0)} KiB of f32, not in the cache's bytes)`;
  }
}

/** Mean and covariance (1/n, as kvpress) of the rows of a ring. */
export class QueryStats {
  readonly mean: Float64Array;
  readonly cov: Float64Array;
  hasCov = true;

  constructor(readonly d: number) {
    this.mean = new Float64Array(d);
    this.cov = new Float64Array(d * d);
  }

  from(rows: Float32Array, count: number, covariance: boolean): this {
    const d = this.d;
    this.mean.fill(0);
    this.cov.fill(0);
    this.hasCov = covariance;
    for (let r = 0; r < count; r++) for (let i = 0; i < d; i++) this.mean[i] = this.mean[i]! + rows[r * d + i]! / count;
    if (!covariance) return this;
    for (let r = 0; r < count; r++) {
      for (let i = 0; i < d; i++) {
        const a = rows[r * d + i]! - this.mean[i]!;
        for (let j = 0; j < d; j++) this.cov[i * d + j] = this.cov[i * d + j]! + (a * (rows[r * d + j]! - this.mean[j]!)) / count;
      }
    }
    return this;
  }
}

/**
 * RoPE averaged over positions [from, from + count): per pair j, mean cos and mean sin of p·θ_j, by the
 * closed form Σ_p e^{ipθ} = e^{i(from + (count−1)/2)θ} · sin(count·θ/2) / sin(θ/2).
 */
export function averagedRope(rope: Rope, from: number, count: number): { cos: Float64Array; sin: Float64Array } {
  const half = rope.headDim / 2;
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let j = 0; j < half; j++) {
    const theta = rope.freqs[j]!;
    const centre = (from + (count - 1) / 2) * theta;
    const denominator = count * Math.sin(theta / 2);
    const ratio = Math.abs(denominator) < 1e-12 ? 1 : Math.sin((count * theta) / 2) / denominator;
    cos[j] = Math.cos(centre) * ratio;
    sin[j] = Math.sin(centre) * ratio;
  }
  return { cos, sin };
}

/**
 * logits[s] = s·μ·u + s²·uᵀΣu/2 with u = R̄ᵀk_s, which equals s·(R̄μ)·k + s²·kᵀ(R̄ΣR̄ᵀ)k/2 without
 * forming R̄ΣR̄ᵀ; R̄ is block-diagonal in RoPE's pairs.
 */
export function expectedLogits(stats: QueryStats, mean: { cos: Float64Array; sin: Float64Array }, rope: Rope, keys: readonly Float32Array[], logits: Float32Array): void {
  const d = stats.d;
  const half = d / 2;
  const scale = rope.scoreScale;
  const u = new Float64Array(d);
  for (let s = 0; s < keys.length; s++) {
    const k = keys[s]!;
    for (let j = 0; j < half; j++) {
      const a = rope.interleaved ? 2 * j : j;
      const b = rope.interleaved ? 2 * j + 1 : j + half;
      // R̄ᵀ on the pair: [[c, s], [−s, c]]
      u[a] = mean.cos[j]! * k[a]! + mean.sin[j]! * k[b]!;
      u[b] = -mean.sin[j]! * k[a]! + mean.cos[j]! * k[b]!;
    }
    let linear = 0;
    for (let i = 0; i < d; i++) linear += stats.mean[i]! * u[i]!;
    let quadratic = 0;
    if (stats.hasCov) {
      for (let i = 0; i < d; i++) {
        let row = 0;
        for (let j = 0; j < d; j++) row += stats.cov[i * d + j]! * u[j]!;
        quadratic += u[i]! * row;
      }
    }
    logits[s] = scale * linear + (scale * scale * quadratic) / 2;
  }
}

/** out[s] += softmax(logits[0, n))[s]. */
function softmaxInto(logits: Float32Array, n: number, out: Float32Array): void {
  let top = -Infinity;
  for (let s = 0; s < n; s++) top = Math.max(top, logits[s]!);
  let total = 0;
  for (let s = 0; s < n; s++) total += Math.exp(logits[s]! - top);
  for (let s = 0; s < n; s++) out[s] = out[s]! + Math.exp(logits[s]! - top) / total;
}

export const expected = policyKind({
  schema: {
    name: 'expected',
    doc: 'Expected Attention: attention the queries to come are expected to pay (recent query statistics, RoPE averaged over future positions), times the value norm',
    paper: 'Devoto et al., Expected Attention: KV Cache Compression by Estimating Attention from Future Queries Distribution, 2025 (arXiv:2510.00636)',
    params: PARAMS,
  },
  create: (params, shape) => new ExpectedAttentionPolicy(params, shape),
  needsRows: true,
  readsKeys: true,
});
