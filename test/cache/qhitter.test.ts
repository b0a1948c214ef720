import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AttentionStats, Policy } from '../../src/cache/policy.js';
import { friendliness, minmaxQuantError, qhitter } from '../../src/cache/policies/qhitter.js';
import { POLICIES, parseSpec, printSpec } from '../../src/cache/registry.js';
import { withDefaults } from '../../src/cache/spec.js';
import type { Model } from '../../src/engine/model.js';
import { STORIES_BIN, withModel } from '../engine/helpers.js';
import { choose } from './helpers.js';

/** The policy's inspection methods (not on the Policy interface). */
type QHitter = Policy & {
  keepOrder(layer: number, head: number, view: { positions: Int32Array; length: number }): number[];
  friendlinessOf(layer: number, head: number, length: number): Float32Array;
  stages(layer: number): { recent: number; default: number; heavy: number };
};

function make(spec: string, numLayers: number, numKvHeads: number, capacity = 16): QHitter {
  const parsed = parseSpec(spec);
  const kind = POLICIES.get('qhitter')!;
  return kind.create(withDefaults(parsed.policy, kind.schema), { numLayers, numKvHeads, capacity }) as QHitter;
}

/**
 * Appends tokens whose key rows are [0, e, 3, 3] and value rows [0, 0, 3, 3]: at 2 bits (scale 1,
 * zero 0) the key's quantization error is e (for e < 0.5) and the value's is 0.
 */
function append(p: Policy, layer: number, head: number, from: number, keyErrors: number[]): void {
  const n = keyErrors.length;
  const keys = new Float32Array(n * 4);
  const values = new Float32Array(n * 4);
  keyErrors.forEach((e, t) => {
    keys.set([0, e, 3, 3], t * 4);
    values.set([0, 0, 3, 3], t * 4);
  });
  p.onAppend(layer, head, from, n, Int32Array.from({ length: n }, (_, t) => from + t), { keys, values, headDim: 4 });
}

/** One step's received probabilities: rows per query head over the live slots. */
function step(layer: number, rows: number[][], group: number, capacity = 16): AttentionStats {
  const length = rows[0]!.length;
  const received = new Float32Array(rows.length * capacity);
  rows.forEach((r, h) => received.set(r, h * capacity));
  return { layer, n: 1, length, capacity, group, received, tail: received, tailRows: 0 };
}

const view = (length: number) => ({ positions: Int32Array.from({ length }, (_, i) => i), length });
const close = (a: ArrayLike<number>) => Array.from(a, (x) => Math.round(x * 1e6) / 1e6);

describe('quantization friendliness', () => {
  it('measures the L2 error of min-max quantizing a row, with the zero point rounded and clamped', () => {
    expect(minmaxQuantError([0, 1, 2, 3], 2)).toBe(0); // scale 1, every value on the grid
    expect(minmaxQuantError([0, 0.4, 1, 1], 1)).toBeCloseTo(0.4, 6); // 0.4 rounds to 0
    // [-1, 0.25, 1] at 2 bits: scale 2/3, zero = -round(-1.5) = 2 (half to even), grid {-4/3, -2/3, 0, 2/3}:
    // -1 → -4/3, 0.25 → 0, 1 → 2/3 (clamped at 3); error √(1/9 + 1/16 + 1/9)
    expect(minmaxQuantError([-1, 0.25, 1], 2)).toBeCloseTo(Math.sqrt(1 / 9 + 1 / 16 + 1 / 9), 6);
  });

  it('is 1 − (minmax(key errors) + minmax(value errors)) / 2 over tokens that arrived together', () => {
    // keys [0, 1, 2] → 0, 0.5, 1; values [4, 4, 8] → 0, 0, 1
    expect(close(friendliness([0, 1, 2], [4, 4, 8]))).toEqual([1, 0.75, 0]);
    // a flat block normalises to 0 (the released code would divide by zero)
    expect(close(friendliness([3, 3], [1, 2]))).toEqual([1, 0.5]);
  });

  it('normalises the prompt as one block across KV heads, then each decoded token across heads', () => {
    const p = make('qhitter(budget=2,default=1,recent=1,bits=2)', 1, 2);
    append(p, 0, 0, 0, [0, 0.2]);
    append(p, 0, 1, 0, [0.4, 0.4]);
    p.observe(step(0, [[0.5, 0.5], [0.5, 0.5]], 1));
    // jointly: errors 0, 0.2 | 0.4, 0.4 → 0, 0.5 | 1, 1 (per head, head 1 would be flat)
    expect(close(p.friendlinessOf(0, 0, 2))).toEqual([1, 0.75]);
    expect(close(p.friendlinessOf(0, 1, 2))).toEqual([0.5, 0.5]);
    // one decoded token per head, normalised across the heads only; settled slots stay
    append(p, 0, 0, 2, [0.1]);
    append(p, 0, 1, 2, [0.3]);
    p.observe(step(0, [[0.3, 0.3, 0.4], [0.3, 0.3, 0.4]], 1));
    expect(close(p.friendlinessOf(0, 0, 3))).toEqual([1, 0.75, 1]);
    expect(close(p.friendlinessOf(0, 1, 3))).toEqual([0.5, 0.5, 0.5]);
  });
});

describe('Q-Hitter selection', () => {
  // positions 0..7; key errors at 2 bits, normalised by 0.4 → friendliness 1 .5 .875 .75 .625 1 .5 .75
  const errors = [0, 0.4, 0.1, 0.2, 0.3, 0, 0.4, 0.2];
  const received = [0.3, 0.25, 0.05, 0.1, 0.02, 0.08, 0.1, 0.1];
  const run = (alpha: string, layers = 1) => {
    const p = make(`qhitter(budget=6,default=2,heavy=2,recent=2,alpha=${alpha},bits=2)`, layers, 1);
    for (let l = 0; l < layers; l++) {
      append(p, l, 0, 0, errors);
      p.observe(step(l, [received], 1));
    }
    return p;
  };

  it('keeps the recent window, then the top `default` by attention, then the top `heavy` by the combined score', () => {
    // alpha 0: recent 7, 6; default by attention 0 (.30), 1 (.25); heavy by friendliness among 2..5:
    // 5 (1), 2 (.875); then 3 (.75), 4 (.625) go. Token 1 (friendliness .5) stays only as a default hitter.
    const p = run('0');
    expect(p.keepOrder(0, 0, view(8))).toEqual([7, 6, 0, 1, 5, 2, 3, 4]);
    expect(Array.from(choose(p, 0, 0, 2, view(8))).sort()).toEqual([3, 4]);
  });

  it('combines min-max attention with friendliness by alpha', () => {
    // attention min-max over the layer (min .02, span .28): 2 → .107, 3 → .286, 4 → 0, 5 → .214
    // alpha .5: 5 → .607, 3 → .518, 2 → .491, 4 → .313; alpha 1 is attention alone: 3, 5, 2, 4
    expect(run('0.5').keepOrder(0, 0, view(8))).toEqual([7, 6, 0, 1, 5, 3, 2, 4]);
    expect(run('1').keepOrder(0, 0, view(8))).toEqual([7, 6, 0, 1, 3, 5, 2, 4]);
  });

  it('evicts the same few slots without sorting as the full keeping order does', () => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 50; trial++) {
      const p = make(`qhitter(budget=9,default=3,heavy=3,recent=3,alpha=${trial % 3 / 2},bits=2)`, 1, 1, 16);
      append(p, 0, 0, 0, Array.from({ length: 12 }, () => Math.round(rand() * 4) / 10));
      // coarse probabilities so ties happen
      p.observe(step(0, [Array.from({ length: 12 }, () => Math.round(rand() * 5) / 10)], 1));
      const count = 1 + (trial % 3);
      const v = view(9 + count);
      expect(Array.from(choose(p, 0, 0, count, v)).sort()).toEqual(p.keepOrder(0, 0, v).slice(9).sort());
    }
  });

  it('takes alpha per layer from a list', () => {
    const p = run('[0,1]', 2);
    expect(Array.from(choose(p, 0, 0, 2, view(8))).sort()).toEqual([3, 4]);
    expect(Array.from(choose(p, 1, 0, 2, view(8))).sort()).toEqual([2, 4]);
  });

  it('averages the query heads of a KV head (GQA)', () => {
    // slot 0 gets .3 and .3, slot 1 gets 0 and .5: the mean ranks slot 0 first (a max would pick slot 1)
    const p = make('qhitter(budget=3,default=1,heavy=1,recent=1,alpha=1,bits=2)', 1, 1);
    append(p, 0, 0, 0, [0, 0, 0, 0]);
    p.observe(step(0, [[0.3, 0, 0.35, 0.35], [0.3, 0.5, 0.1, 0.1]], 2));
    // means .3 .25 .225 .225: recent 3, default 0, heavy 1, then 2
    expect(p.keepOrder(0, 0, view(4))).toEqual([3, 0, 1, 2]);
  });

  it('fixes the stage budgets from the prompt length; qhitter(budget=0.2) keeps as many tokens as h2o(budget=0.2)', () => {
    const p = make('qhitter(budget=0.2)', 1, 1);
    p.setPromptLength(2048);
    expect(p.stages(0)).toEqual({ recent: 102, default: 143, heavy: 165 });
    expect(p.budget(0)).toBe(410);
    const h2o = POLICIES.get('h2o')!;
    const h = h2o.create(withDefaults(parseSpec('h2o(budget=0.2)').policy, h2o.schema), { numLayers: 1, numKvHeads: 1, capacity: 4 });
    h.setPromptLength(2048);
    expect(h.budget(0)).toBe(410);
    expect(() => make('qhitter(budget=0.3,heavy=0.1)', 1, 1)).toThrow(/budget = default \+ heavy \+ recent/);
    expect(make('qhitter(budget=0.2,default=0.07,heavy=0.08,recent=0.05)', 1, 1)).toBeDefined();
  });
});

describe('Q-Hitter in the cache (stories260K)', () => {
  const story = JSON.parse(fs.readFileSync(path.resolve('../shared/data/stories260k/samples.jsonl'), 'utf8').split('\n')[0]!) as { ids: number[] };
  const ids = story.ids.slice(0, 160);
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  it('never holds more than its budget, keeps the newest token, and stores what it keeps with its own codec', () => {
    const spec = 'qhitter(budget=32,default=8,recent=8)';
    expect(printSpec(parseSpec(spec))).toBe(spec); // the spec prints as written
    const session = model.session({ cache: spec });
    const cache = session.cache;
    const codecSpec = qhitter.defaultCodec!(withDefaults(parseSpec(spec).policy, qhitter.schema));
    expect(cache.spec).toBe(spec);
    expect(parseSpec(spec).codec).toEqual(parseSpec(`full+${codecSpec}`).codec);
    session.score(ids, {
      mode: 'decode',
      onLogits: (index) => {
        for (let l = 0; l < model.config.numLayers; l++) {
          expect(cache.layerLengths()[l]).toBeLessThanOrEqual(32);
          for (let h = 0; h < model.config.numKvHeads; h++) expect(cache.heldPositions(l, h)).toContain(index);
        }
      },
    });
    // kept tokens cost exactly what the codec alone costs per token
    const lengths = cache.layerLengths();
    expect(lengths).toEqual(new Array(model.config.numLayers).fill(32));
    const plain = model.session({ cache: `full+${codecSpec}` });
    plain.feed(ids.slice(0, 32));
    expect(cache.codec.bytes(lengths)).toBe(plain.cache.codec.bytes(plain.cache.layerLengths()));
    const c = model.config;
    expect(cache.codec.bytes(lengths) / (32 * c.numLayers * c.numKvHeads)).toBe(
      plain.cache.codec.bytes(plain.cache.layerLengths()) / (32 * c.numLayers * c.numKvHeads),
    );
    expect(cache.codec.bitsPerValue()).toBeCloseTo(plain.cache.codec.bitsPerValue(), 0); // its own int codec, not fp32
  });

  it('with alpha = 1 is H2O with the same recent window (the released code\'s "H2O + quantization" baseline)', () => {
    // default + heavy are then both the top by accumulated attention
    const int4 = 'int(bits=4,axis=token,group=64)';
    const q = model.session({ cache: `qhitter(budget=32,default=8,recent=8,alpha=1)+${int4}` }).score(ids, { mode: 'decode' });
    const h = model.session({ cache: `h2o(budget=32,recent=8)+${int4}` }).score(ids, { mode: 'decode' });
    expect(Array.from(q)).toEqual(Array.from(h));
  });

  it('an explicit codec wins over the default one', () => {
    const session = model.session({ cache: 'qhitter(budget=32)+fp16' });
    expect(session.cache.spec).toBe('qhitter(budget=32)+fp16');
  });
});
