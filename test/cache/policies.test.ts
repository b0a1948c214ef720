import { describe, expect, it } from 'vitest';
import type { AttentionStats, Policy, PolicyKind } from '../../src/cache/policy.js';
import { maxPoolByPosition } from '../../src/cache/policies/snapkv.js';
import { pyramid } from '../../src/cache/budget.js';
import { choose } from './helpers.js';
import { POLICIES, parseSpec } from '../../src/cache/registry.js';
import { withDefaults } from '../../src/cache/spec.js';

/** A policy for `numKvHeads` heads, with `length` slots at positions 0..length-1 already appended. */
function make(spec: string, numKvHeads: number, length: number, capacity = 16): Policy {
  const parsed = parseSpec(spec);
  const kind = POLICIES.get(parsed.policy.name) as PolicyKind;
  const policy = kind.create(withDefaults(parsed.policy, kind.schema), { numLayers: 1, numKvHeads, capacity });
  const positions = Int32Array.from({ length }, (_, i) => i);
  for (let h = 0; h < numKvHeads; h++) {
    // one-dimensional keys 1..length: their norms are 1..length
    const rows = { keys: Float32Array.from({ length }, (_, i) => i + 1), values: new Float32Array(length), headDim: 1 };
    policy.onAppend(0, h, 0, length, positions, rows);
  }
  return policy;
}

/** Stats for one step: rows are per query head probability rows over the live slots. */
function step(rows: number[][], opts: { group: number; capacity?: number; n?: number }): AttentionStats {
  const capacity = opts.capacity ?? 16;
  const length = rows[0]!.length;
  const block = new Float32Array(rows.length * capacity);
  rows.forEach((r, h) => block.set(r, h * capacity));
  return { layer: 0, n: opts.n ?? 1, length, capacity, group: opts.group, received: block, tail: block, tailRows: 1 };
}

const view = (length: number, positions = Int32Array.from({ length }, (_, i) => i)) => ({ positions, length });
const sorted = (a: Int32Array) => Array.from(a).sort((x, y) => x - y);

describe('H2O', () => {
  it('keeps the heavy hitters by attention summed over every query, plus the recent window', () => {
    const p = make('h2o(budget=4,recent=1)', 1, 6);
    p.observe(step([[0.5, 0.1, 0.1, 0.1, 0.1, 0.1]], { group: 1 }));
    p.observe(step([[0.1, 0.1, 0.4, 0.05, 0.3, 0.05]], { group: 1 }));
    // sums: 0.6 0.2 0.5 0.15 0.4 0.15; slot 5 (newest) is protected; the two lowest others are 3 and 1
    expect(sorted(choose(p, 0, 0, 2, view(6)))).toEqual([1, 3]);
  });

  it('combines the query heads of a KV head by their mean (GQA)', () => {
    const p = make('h2o(budget=2,recent=1)', 1, 4);
    // query head 0 favours slot 0, query head 1 favours slot 1 more strongly: mean ranks slot 1 first
    p.observe(step([[0.7, 0.1, 0.1, 0.1], [0.0, 0.9, 0.05, 0.05]], { group: 2 }));
    expect(sorted(choose(p, 0, 0, 2, view(4)))).toEqual([0, 2]);
  });

  it('keeps half the budget as the recent window when recent is not given', () => {
    const p = make('h2o(budget=4)', 1, 8);
    p.observe(step([[0.9, 0.01, 0.01, 0.01, 0.01, 0.02, 0.02, 0.02]], { group: 1 }));
    // recent = 2 → positions 6, 7 protected; two heavy slots kept: 0 and 5
    const evicted = sorted(choose(p, 0, 0, 4, view(8)));
    expect(evicted).toEqual([1, 2, 3, 4]);
  });

  it('a fractional budget is a share of the reference length', () => {
    const p = make('h2o(budget=0.25,recent=0.1)', 1, 1);
    p.setPromptLength(100);
    expect(p.budget(0)).toBe(25);
  });
});

describe('Scissorhands', () => {
  it('counts, over the last `window` steps, how often each token got less than 1/t, and drops the highest counts', () => {
    const p = make('scissorhands(budget=3,window=2,recent=1,drop=2)', 1, 4);
    p.observe(step([[0.1, 0.5, 0.2, 0.2]], { group: 1 })); // low: 1 0 1 1 (falls out of the window)
    p.observe(step([[0.3, 0.1, 0.3, 0.3]], { group: 1 })); // low: 0 1 0 0
    p.observe(step([[0.1, 0.1, 0.7, 0.1]], { group: 1 })); // low: 1 1 0 1
    // counts over the last two steps: 1 2 0 1; slot 3 is recent; drop = 2 → slots 1 and 0 go
    expect(p.target(0)).toBe(2);
    expect(Array.from(choose(p, 0, 0, 2, view(4)))).toEqual([1, 0]);
  });
});

describe('TOVA', () => {
  it('drops the token the current query (heads averaged) attends to least', () => {
    const p = make('tova(budget=3)', 1, 4);
    p.observe(step([[0.1, 0.2, 0.3, 0.4], [0.3, 0.0, 0.3, 0.4]], { group: 2 }));
    p.observe(step([[0.4, 0.1, 0.2, 0.3], [0.4, 0.2, 0.1, 0.3]], { group: 2 }));
    // only the last step counts: means 0.4 0.15 0.15 0.3 → the tie goes to the older slot 1
    expect(Array.from(choose(p, 0, 0, 1, view(4)))).toEqual([1]);
  });
});

describe('SnapKV', () => {
  it('max-pools votes over neighbours in position order, whatever the slot order', () => {
    // slots hold positions 3,0,4,1,2 with votes; in position order votes are [0.1,0.0,0.9,0.2,0.05]
    const positions = Int32Array.from([3, 0, 4, 1, 2]);
    const votes = [0.2, 0.1, 0.05, 0.0, 0.9];
    const pooled = maxPoolByPosition(votes, view(5, positions), 3);
    // in position order pooled = [0.1,0.9,0.9,0.9,0.2] → back in slot order:
    expect(pooled).toEqual([0.9, 0.1, 0.2, 0.9, 0.9]);
  });

  it('keeps the observation window and the top pooled votes', () => {
    const p = make('snapkv(budget=4,window=2,pool=1)', 1, 6);
    p.observe(step([[0.05, 0.5, 0.05, 0.2, 0.1, 0.1]], { group: 1 }));
    p.observe(step([[0.05, 0.3, 0.05, 0.3, 0.2, 0.1]], { group: 1 }));
    // window protects positions 4, 5; votes 0.1 0.8 0.1 0.5 → keep 1 and 3
    expect(sorted(choose(p, 0, 0, 2, view(6)))).toEqual([0, 2]);
  });
});

describe('window (StreamingLLM)', () => {
  it('keeps the sinks and the most recent tokens', () => {
    const p = make('window(sinks=2,recent=3)', 1, 10);
    expect(p.budget(0)).toBe(5);
    expect(sorted(choose(p, 0, 0, 5, view(10)))).toEqual([2, 3, 4, 5, 6]);
  });
});

describe('knorm and random', () => {
  it('knorm drops the largest key norms', () => {
    const p = make('knorm(budget=2)', 1, 4); // norms 1..4
    expect(sorted(choose(p, 0, 0, 2, view(4)))).toEqual([2, 3]);
  });

  it('random is reproducible by seed', () => {
    const a = make('random(budget=2,seed=5)', 1, 10);
    const b = make('random(budget=2,seed=5)', 1, 10);
    const c = make('random(budget=2,seed=6)', 1, 10);
    expect(Array.from(choose(a, 0, 0, 8, view(10)))).toEqual(Array.from(choose(b, 0, 0, 8, view(10))));
    expect(Array.from(choose(a, 0, 0, 8, view(10)))).not.toEqual(Array.from(choose(c, 0, 0, 8, view(10))));
  });
});

describe('budgets per layer', () => {
  it('pyramid falls linearly and keeps the total', () => {
    const layers = Array.from({ length: 6 }, (_, l) => pyramid(100, l, 6));
    expect(layers[0]).toBeGreaterThan(layers[5]!);
    expect(layers[5]).toBe(5);
    expect(Math.abs(layers.reduce((a, b) => a + b, 0) - 600)).toBeLessThanOrEqual(3);
  });

  it('an explicit list gives each layer its own budget', () => {
    const parsed = parseSpec('h2o(budget=[8,4,2])');
    const kind = POLICIES.get('h2o')!;
    const p = kind.create(withDefaults(parsed.policy, kind.schema), { numLayers: 3, numKvHeads: 1, capacity: 8 });
    expect([0, 1, 2].map((l) => p.budget(l))).toEqual([8, 4, 2]);
  });
});
