import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UsageError } from '../../src/errors.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { expectCleanFailure, kvpack } from '../cli/run.js';
import { STORIES_BIN } from './helpers.js';

// `attention: 'exact' | 'fast'` reaches packed caches from the library and the command line, with one
// meaning: fast changes packed caches' numbers a little, float caches' not at all.

// past kvquant's first 64 tokens, which stay f16 until it has calibrated on them
const PROMPT = Array.from({ length: 160 }, (_, i) => (i === 0 ? 1 : 3 + ((i * 37) % 500)));
const PACKED = 'full+kvquant(bits=3)';

function logits(model: Model, cache: string, attention?: 'exact' | 'fast'): Float32Array {
  const session = model.session({ cache, ...(attention && { attention }) });
  try {
    return session.feed(PROMPT).slice();
  } finally {
    session.dispose();
  }
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('attention mode', () => {
  let exact: Model;
  let fast: Model;
  beforeAll(async () => {
    exact = await loadModel(STORIES_BIN, { threads: 1 });
    fast = await loadModel(STORIES_BIN, { threads: 1, attention: 'fast' });
  });
  afterAll(async () => {
    await exact?.close();
    await fast?.close();
  });

  it('fast moves a packed cache\'s logits, less than quantizing moved them; a session can ask for exact again', () => {
    const want = logits(exact, PACKED);
    const got = logits(fast, PACKED);
    const d = maxDiff(got, want);
    expect(d).toBeGreaterThan(0);
    expect(d).toBeLessThan(maxDiff(want, logits(exact, 'full+fp32')));
    expect(logits(fast, PACKED, 'exact')).toEqual(want);
    expect(logits(exact, PACKED, 'fast')).toEqual(got);
  });

  it('float caches ignore it', () => {
    expect(logits(fast, 'full+fp16')).toEqual(logits(exact, 'full+fp16'));
  });

  it('an unknown mode is refused by name', async () => {
    await expect(loadModel(STORIES_BIN, { threads: 1, attention: 'quick' as 'fast' })).rejects.toThrow(UsageError);
    expect(() => exact.session({ attention: 'quick' as 'fast' })).toThrow(/attention/);
    expectCleanFailure(kvpack('generate', '--model', STORIES_BIN, '--attention', 'quick', 'Once'), '--attention', 'exact, fast');
  });

  it('kvpack generate --attention fast runs a packed cache', () => {
    const r = kvpack('generate', '--model', STORIES_BIN, '--cache', PACKED, '--attention', 'fast', '--greedy', '--max-tokens', '8', 'Once upon a time');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBeGreaterThan(0);
  });
});
