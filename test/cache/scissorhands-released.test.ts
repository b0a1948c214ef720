import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { AttentionStats, MaskingPolicy } from '../../src/cache/policy.js';
import { POLICIES, parseSpec } from '../../src/cache/registry.js';
import { withDefaults } from '../../src/cache/spec.js';
import { UsageError } from '../../src/errors.js';
import type { Model } from '../../src/engine/model.js';
import { STORIES_BIN, withModel } from '../engine/helpers.js';

const CAPACITY = 8;

function policy(spec: string) {
  const parsed = parseSpec(spec);
  const kind = POLICIES.get('scissorhands')!;
  return kind.create(withDefaults(parsed.policy, kind.schema), { numLayers: 1, numKvHeads: 1, capacity: CAPACITY }) as MaskingPolicy;
}
const row = (values: number[]) => {
  const r = new Float32Array(CAPACITY);
  r.set(values);
  return r;
};
const observe = (probs: Float32Array, length: number): AttentionStats =>
  ({ layer: 0, n: 1, length, capacity: CAPACITY, group: 1, received: new Float32Array(0), tail: probs, tailRows: 1 });

describe('scissorhands(mode=reference): the released evaluation code', () => {
  it('thresholds each row at its 90th percentile over the whole sequence, and hides tokens no recent row rated above it', () => {
    const p = policy('scissorhands(mode=reference,lru_window=2,position_window=1,start=0,layers=[0,0])');
    p.setPromptLength(10);
    const positions = Int32Array.from({ length: CAPACITY }, (_, i) => i);
    // query at position 3 sees 4 slots; with 6 zeros for positions 4..9 its rank-9 value is 0.4
    const m1 = p.maskQuery(0, row([0.1, 0.2, 0.3, 0.4]), 4, CAPACITY, positions)!;
    // nothing counted yet: positions 0, 1 hidden; 2 is in the position window; 3 is the query itself
    expect(Array.from(m1.subarray(0, 4))).toEqual([1, 1, 0, 0]);
    p.observe(observe(row([0, 0, 0.45, 0.55]), 4)); // masked row: slots 2 and 3 are above 0.4
    // next query (position 4): threshold = 5th smallest of the 5 seen = 0.3
    const m2 = p.maskQuery(0, row([0.05, 0.05, 0.3, 0.3, 0.3]), 5, CAPACITY, positions)!;
    expect(Array.from(m2.subarray(0, 5))).toEqual([1, 1, 0, 0, 0]);
    expect(p.budget(0)).toBe(Infinity);
  });

  it('leaves layers outside its range and queries before `start` unmasked', () => {
    const p = policy('scissorhands(mode=reference,start=50,layers=[1,2])');
    const positions = Int32Array.from({ length: CAPACITY }, (_, i) => i);
    expect(p.maskQuery(0, row([0.5, 0.5]), 2, CAPACITY, positions)).toBeUndefined();
  });

  it('paper mode still needs a budget', () => {
    expect(() => policy('scissorhands(window=8)')).toThrow(UsageError);
  });
});

describe('scissorhands(mode=reference) on stories260K', () => {
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));
  const ids = (JSON.parse(fs.readFileSync(path.resolve('../shared/data/stories260k/samples.jsonl'), 'utf8').split('\n')[0]!) as { ids: number[] }).ids.slice(0, 200);

  it('masks instead of evicting: keeps every token, attends to fewer, and changes the predictions', () => {
    const full = model.session({ cache: 'full+fp32' }).score(ids, { mode: 'decode' });
    const session = model.session({ cache: 'scissorhands(mode=reference,layers=[0,4],start=40,lru_window=20,position_window=5)+fp32' });
    const masked = session.score(ids, { mode: 'decode' });
    expect(session.cache.meanLength()).toBe(ids.length);
    const keep = session.cache.policy.stats!().keep_ratio!;
    expect(keep).toBeGreaterThan(0);
    expect(keep).toBeLessThan(1);
    // before `start` nothing is masked: identical; after, different
    expect(Array.from(masked.slice(0, 39))).toEqual(Array.from(full.slice(0, 39)));
    expect(Array.from(masked.slice(60))).not.toEqual(Array.from(full.slice(60)));
  });

  it('needs a float codec', () => {
    expect(() => model.session({ cache: 'scissorhands(mode=reference,layers=[0,4],start=10)+int(bits=4)' }).score(ids.slice(0, 60), { mode: 'decode' })).toThrow(UsageError);
  });
});
