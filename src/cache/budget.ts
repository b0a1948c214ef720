import { number, oneOf, param, type Params } from '../util/schema.js';

/** A token count (integer ≥ 1) or a fraction of the prompt (0 < x < 1); or a list of them, one per layer. */
export type Budget = number | readonly number[];

const isBudget = (x: unknown) => typeof x === 'number' && x > 0 && (x < 1 || Number.isInteger(x));

/** A budget parameter: a token count or a fraction of the prompt, or a list of them per layer. */
export function budget<const O extends { doc: string; default?: Budget; optional?: true }>(o: O) {
  const words = 'a token count (integer ≥ 1) or a fraction of the prompt in (0, 1), or a list of them per layer';
  return param<Budget, O>(
    (v: unknown) => ((Array.isArray(v) ? v.length > 0 && v.every(isBudget) : isBudget(v)) ? undefined : `must be ${words}`),
    { ...o, range: words, perLayer: true, tokens: true },
  );
}

/** Spec parameters shared by every budgeted policy. */
export const BUDGET_PARAMS = {
  budget: budget({ doc: 'tokens kept per KV head: a count, a fraction of the prompt, or a list per layer' }),
  schedule: oneOf(['uniform', 'pyramid'], {
    default: 'uniform',
    doc: 'uniform: every layer gets the budget; pyramid: PyramidKV (Cai et al., arXiv:2406.02069), lower layers more, same total',
  }),
  heads: oneOf(['uniform', 'adakv'], {
    default: 'uniform',
    doc: "uniform: every KV head keeps the budget; adakv: AdaKV (Feng et al., arXiv:2407.11550), a layer's heads share heads × budget by score",
  }),
  floor: number({ min: 0, max: 1, default: 0.2, doc: 'heads=adakv: share of the budget each head keeps whatever its scores (the safeguard)' }),
};

export type Schedule = 'uniform' | 'pyramid';
/** How a layer's budget is split across its KV heads. */
export type HeadSplit = 'uniform' | 'adakv';

/**
 * What is wrong with a policy's token parameters for one model: a per-layer list whose length is not
 * the layer count, or a token count beyond the model's context.
 */
export function budgetProblem(given: Readonly<Record<string, unknown>>, schema: Params, numLayers: number, context: number): string | undefined {
  for (const [key, p] of Object.entries(schema)) {
    const v = given[key];
    if (Array.isArray(v) && p.perLayer && v.length !== numLayers) {
      return `${key}=[${v.join(',')}] has ${v.length} entries but the model has ${numLayers} layers; give one per layer, or one value for all`;
    }
    const tooMany = p.tokens ? (Array.isArray(v) ? v : [v]).find((x) => typeof x === 'number' && x > context) : undefined;
    if (tooMany !== undefined) return `${key}=${tooMany} tokens exceeds the model's context of ${context} tokens`;
  }
  return undefined;
}

/**
 * Turns a budget spec into tokens per layer. A fraction refers to the prompt length (the prompt,
 * or the scored sequence) and is resolved when that length is known.
 */
export class LayerBudgets {
  private promptLength = 0;

  constructor(
    private readonly spec: Budget,
    private readonly numLayers: number,
    private readonly schedule: Schedule,
  ) {}

  static from(params: { budget: Budget; schedule: Schedule }, numLayers: number): LayerBudgets {
    return new LayerBudgets(params.budget, numLayers, params.schedule);
  }

  setPromptLength(tokens: number): void {
    this.promptLength = tokens;
  }

  /** Tokens layer l keeps (at least 1). Before the prompt length is set, a fractional budget keeps everything. */
  forLayer(l: number): number {
    const base = resolveCount(budgetOfLayer(this.spec, l), this.promptLength);
    if (this.schedule === 'uniform' || this.numLayers < 2 || !Number.isFinite(base)) return base;
    return pyramid(base, l, this.numLayers);
  }
}

/** A budget's entry for layer l (a list has one per layer; the cache builder checks its length). */
export function budgetOfLayer(b: Budget, l: number): number {
  return typeof b === 'number' ? b : b[l]!;
}

/** A count stays; a fraction becomes round(fraction × promptLength), at least 1 (Infinity without a prompt length). */
export function resolveCount(value: number, promptLength: number): number {
  if (value >= 1) return value;
  if (promptLength <= 0) return Infinity;
  return Math.max(1, Math.round(value * promptLength));
}

/**
 * PyramidKV's schedule: budgets fall linearly from the first layer to the last with the same total
 * as `average` per layer; the last layer gets average / beta and the first 2·average − that (beta = 20).
 */
export function pyramid(average: number, layer: number, numLayers: number, beta = 20): number {
  const total = average * numLayers;
  const top = total / (beta * numLayers);
  const bottom = (2 * total) / numLayers - top;
  const value = bottom - ((bottom - top) * layer) / (numLayers - 1);
  return Math.max(1, Math.round(value));
}
