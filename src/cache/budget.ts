import type { ParamSchema, ParamValue } from './spec.js';

/** Spec parameters shared by every budgeted policy. */
export const BUDGET_PARAMS = {
  budget: { type: { kind: 'budget' }, doc: 'tokens kept per KV head: a count, a fraction of the prompt, or a list per layer' },
  schedule: {
    type: { kind: 'enum', values: ['uniform', 'pyramid'] },
    default: 'uniform',
    doc: 'uniform: every layer gets the budget; pyramid: PyramidKV, lower layers more, same total',
  },
} as const satisfies Record<string, ParamSchema>;

/**
 * Turns a budget spec into tokens per layer. A fraction refers to the prompt length (the prompt,
 * or the scored sequence) and is resolved when that length is known.
 */
export class LayerBudgets {
  private promptLength = 0;

  constructor(
    private readonly spec: number | number[],
    private readonly numLayers: number,
    private readonly schedule: 'uniform' | 'pyramid',
  ) {}

  static from(params: Record<string, ParamValue>, numLayers: number): LayerBudgets {
    return new LayerBudgets(params.budget as number | number[], numLayers, params.schedule as 'uniform' | 'pyramid');
  }

  setPromptLength(tokens: number): void {
    this.promptLength = tokens;
  }

  /** Tokens layer l keeps (at least 1). Before the prompt length is set, a fractional budget keeps everything. */
  forLayer(l: number): number {
    const raw = Array.isArray(this.spec) ? this.spec[Math.min(l, this.spec.length - 1)]! : this.spec;
    const base = resolveCount(raw, this.promptLength);
    if (this.schedule === 'uniform' || this.numLayers < 2 || !Number.isFinite(base)) return base;
    return pyramid(base, l, this.numLayers);
  }
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
