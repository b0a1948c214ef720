import { describe, expect, it } from 'vitest';
import { Rope } from '../../src/kernels/rope.js';
import { averagedRope, expectedLogits, QueryStats } from '../../src/cache/policies/expected.js';
import { POLICIES, parseSpec } from '../../src/cache/registry.js';
import { withDefaults } from '../../src/cache/spec.js';
import type { PolicyKind } from '../../src/cache/policy.js';
import type { Model } from '../../src/engine/model.js';
import { STORIES_BIN, withModel } from '../engine/helpers.js';
import { seededRandom } from '../../src/util/random.js';
import { storyIds } from './helpers.js';

const ROPES = {
  'half, theta 10000': new Rope({ headDim: 8, ropeTheta: 10000, ropeLayout: 'half' }),
  'interleaved, Llama 3.1 scaling': new Rope({
    headDim: 8, ropeTheta: 500000, ropeLayout: 'interleaved',
    ropeScaling: { kind: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 },
  }),
};

/** R̄ as a d×d matrix: the rotation matrices of positions [from, from + count) averaged, column by column through Rope.rotate. */
function averagedMatrix(rope: Rope, from: number, count: number): number[][] {
  const d = rope.headDim;
  const m = Array.from({ length: d }, () => new Array<number>(d).fill(0));
  for (let p = from; p < from + count; p++) {
    for (let c = 0; c < d; c++) {
      const e = new Array<number>(d).fill(0);
      e[c] = 1;
      rope.rotate(e, 0, p);
      for (let r = 0; r < d; r++) m[r]![c] = m[r]![c]! + e[r]! / count;
    }
  }
  return m;
}

const matVec = (m: number[][], v: ArrayLike<number>) => m.map((row) => row.reduce((s, x, i) => s + x * v[i]!, 0));
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, x, i) => s + x * b[i]!, 0);

describe('Expected Attention scores, against their definition', () => {
  it.each(Object.entries(ROPES))('RoPE averaged over future positions in closed form equals the mean of the rotations (%s)', (_, rope) => {
    const from = 37;
    const count = 512;
    const { cos, sin } = averagedRope(rope, from, count);
    const m = averagedMatrix(rope, from, count);
    for (let j = 0; j < rope.headDim / 2; j++) {
      const a = rope.interleaved ? 2 * j : j;
      const b = rope.interleaved ? 2 * j + 1 : j + rope.headDim / 2;
      expect(cos[j]).toBeCloseTo(m[a]![a]!, 10);
      expect(sin[j]).toBeCloseTo(m[b]![a]!, 10);
      expect(-sin[j]!).toBeCloseTo(m[a]![b]!, 10);
    }
  });

  it.each(Object.entries(ROPES))('a key\'s logit is s·(R̄μ)·k + s²·kᵀ(R̄ΣR̄ᵀ)k/2, and that is log E[exp(s·q·k)] for q ~ N(R̄μ, R̄ΣR̄ᵀ) (%s)', (_, rope) => {
    const d = rope.headDim;
    const random = seededRandom(11);
    const queries = Float32Array.from({ length: 64 * d }, (_, i) => (random() - 0.5) * 3 + (i % d === 1 ? 2 : 0));
    const stats = new QueryStats(d).from(queries, 64, true);
    const keys = Array.from({ length: 5 }, () => Float32Array.from({ length: d }, () => (random() - 0.5) * 4));
    const logits = new Float32Array(keys.length);
    const mean = averagedRope(rope, 200, 512);
    expectedLogits(stats, mean, rope, keys, logits);
    const R = averagedMatrix(rope, 200, 512);
    const mu = matVec(R, stats.mean);
    const sigma = Array.from({ length: d }, (_, i) => Array.from({ length: d }, (_, j) => stats.cov[i * d + j]!));
    const rs = R.map((row) => sigma[0]!.map((_, j) => row.reduce((s, x, k) => s + x * sigma[k]![j]!, 0))); // RΣ
    const cov = rs.map((row) => R.map((rrow) => row.reduce((s, x, k) => s + x * rrow[k]!, 0))); // RΣRᵀ
    const s = rope.scoreScale;
    // a Cholesky factor of the rotated covariance, to draw q from N(mu, cov)
    const L = Array.from({ length: d }, () => new Array<number>(d).fill(0));
    for (let i = 0; i < d; i++) {
      for (let j = 0; j <= i; j++) {
        let sum = cov[i]![j]!;
        for (let k = 0; k < j; k++) sum -= L[i]![k]! * L[j]![k]!;
        L[i]![j] = i === j ? Math.sqrt(Math.max(sum, 1e-12)) : sum / L[j]![j]!;
      }
    }
    const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
    const samples = 40000;
    const sums = new Array<number>(keys.length).fill(0);
    for (let n = 0; n < samples; n++) {
      const z = Array.from({ length: d }, gauss);
      const q = mu.map((m, i) => m + L[i]!.reduce((acc, x, k) => acc + x * z[k]!, 0));
      keys.forEach((k, i) => (sums[i] = sums[i]! + Math.exp(s * dot(q, k))));
    }
    keys.forEach((k, i) => {
      const exact = s * dot(mu, k) + (s * s * dot(k, matVec(cov, k))) / 2;
      expect(logits[i]).toBeCloseTo(exact, 4);
      expect(Math.log(sums[i]! / samples)).toBeCloseTo(exact, 1);
    });
  });

  it('the policy evicts the lowest softmax(expected logits) × ‖v‖, keeping sinks, from queries it saw after RoPE', () => {
    const rope = ROPES['half, theta 10000'];
    const d = rope.headDim;
    const kind = POLICIES.get('expected') as PolicyKind;
    const policy = kind.create(withDefaults(parseSpec('expected(budget=6,sinks=2,queries=16,future=64)').policy, kind.schema), { numLayers: 1, numKvHeads: 1, numHeads: 2, capacity: 32, rope });
    const random = seededRandom(5);
    const length = 20;
    const positions = Int32Array.from({ length }, (_, i) => i);
    const preKeys = Float32Array.from({ length: length * d }, () => random() - 0.5);
    const values = Float32Array.from({ length: length * d }, () => random() * 2 - 1);
    policy.onAppend(0, 0, 0, length, positions, { keys: preKeys, values, headDim: d });
    // queries before RoPE, handed over rotated to their positions, as attention sees them
    const pre = Float32Array.from({ length: length * 2 * d }, () => random() - 0.3);
    const rotated = pre.slice();
    for (let t = 0; t < length; t++) for (let j = 0; j < 2; j++) rope.rotate(rotated, (t * 2 + j) * d, t);
    policy.observeQueries!(0, rotated, length, positions);
    const keys = Array.from({ length }, (_, s) => {
      const k = preKeys.slice(s * d, (s + 1) * d);
      rope.rotate(k, 0, s);
      return k;
    });
    const choose = (count: number) => {
      const out = new Int32Array(count);
      policy.choose(0, 0, count, { positions, length, key: (s) => keys[s]! }, out);
      return Array.from(out).sort((a, b) => a - b);
    };
    // the reference: statistics of the last 16 queries past the 2 sinks of each query head, by definition
    const want = new Array<number>(length).fill(0);
    const R = averagedMatrix(rope, length, 64);
    for (let j = 0; j < 2; j++) {
      const rows = Array.from({ length: 16 }, (_, r) => Array.from(pre.subarray(((length - 16 + r) * 2 + j) * d, ((length - 16 + r) * 2 + j + 1) * d)));
      const mean = rows[0]!.map((_, i) => rows.reduce((s, row) => s + row[i]!, 0) / 16);
      const cov = mean.map((_, a) => mean.map((_, b) => rows.reduce((s, row) => s + (row[a]! - mean[a]!) * (row[b]! - mean[b]!), 0) / 16));
      const logits = keys.map((k) => {
        const u = R[0]!.map((_, c) => R.reduce((s, row, r) => s + row[c]! * k[r]!, 0)); // Rᵀk
        return rope.scoreScale * dot(mean, u) + (rope.scoreScale ** 2 * dot(u, matVec(cov, u))) / 2;
      });
      const top = Math.max(...logits);
      const total = logits.reduce((s, x) => s + Math.exp(x - top), 0);
      logits.forEach((x, s) => (want[s] = want[s]! + Math.exp(x - top) / total / 2));
    }
    const scored = want.map((p, s) => p * Math.hypot(...values.subarray(s * d, (s + 1) * d)));
    const order = [...scored.keys()].filter((s) => s >= 2).sort((a, b) => scored[a]! - scored[b]!);
    // the whole ranking: every count evicts the lowest that many
    for (let count = 1; count <= length - 2; count++) expect(choose(count)).toEqual(order.slice(0, count).sort((a, b) => a - b));
    // what the trace shows: the scores of the last cut
    const shown = Array.from(policy.heldScores!(0, 0, length));
    for (let s = 2; s < length; s++) expect(shown[s]).toBeCloseTo(scored[s]!, 6);
  });
});

describe('Expected Attention cache (stories260K)', () => {
  const ids = storyIds(120);
  let model: Model;
  withModel(STORIES_BIN, (m) => (model = m));

  it.each(['expected(budget=24)', 'expected(budget=24,heads=adakv)', 'expected(budget=0.3,covariance=false,vnorm=false)+fp32'])(
    '%s holds its budget while decoding and always keeps the sinks',
    (spec) => {
      const session = model.session({ cache: spec });
      const cache = session.cache;
      const c = model.config;
      session.score(ids, {
        mode: 'decode',
        onLogits: (index) => {
          const sinks = [0, 1, 2, 3].filter((p) => p <= index);
          for (let l = 0; l < c.numLayers; l++) {
            const counts = cache.headCountsOf(l);
            expect(counts.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(c.numKvHeads * cache.policy.budget(l));
            for (let h = 0; h < c.numKvHeads; h++) expect(cache.heldPositions(l, h)).toEqual(expect.arrayContaining(sinks));
          }
        },
      });
      expect(cache.note()).toMatch(/queries/);
      // keys and values, the slot's position and its value norm; the scores kept for the trace are not the cache's
      expect(cache.bytes()).toBe(cache.heldSlots() * (2 * c.headDim * (spec.endsWith('fp32') ? 4 : 2) + 4 + 4));
    },
  );

  it('with every=8, a cut leaves room for 8 tokens, so decoding cuts once per 8 tokens', () => {
    const session = model.session({ cache: 'expected(budget=24,every=8)' });
    session.feed(ids.slice(0, 100));
    expect(session.cache.layerLengths()).toEqual(new Array(model.config.numLayers).fill(16));
    for (let i = 0; i < 8; i++) session.feed([ids[100 + i]!]);
    expect(session.cache.meanLength()).toBe(24);
    session.feed([ids[108]!]);
    expect(session.cache.meanLength()).toBe(16);
  });

  it('refuses to stream (the cache would hold keys before RoPE)', () => {
    expect(() => model.session({ cache: 'expected(budget=64)', streaming: true })).toThrow(/streaming/);
  });
});
