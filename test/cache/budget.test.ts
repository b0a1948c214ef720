import { afterEach, describe, expect, it, vi } from 'vitest';
import type { PolicyKind } from '../../src/cache/policy.js';
import { POLICIES, parseSpec } from '../../src/cache/registry.js';
import { withDefaults } from '../../src/cache/spec.js';

function policy(spec: string) {
  const parsed = parseSpec(spec);
  const kind = POLICIES.get(parsed.policy.name) as PolicyKind;
  return kind.create(withDefaults(parsed.policy, kind.schema), { numLayers: 2, numKvHeads: 1, capacity: 8 });
}

describe('a fractional budget of a short prompt', () => {
  afterEach(() => vi.restoreAllMocks());

  it('warns once on stderr when it resolves to fewer than a few tokens', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const p = policy('h2o(budget=0.2,recent=0.05)');
    p.setPromptLength(5); // "The history of" with BOS: 0.2 × 5 = 1 token
    expect(p.budget(0)).toBe(1);
    const warnings = stderr.mock.calls.map((c) => String(c[0])).filter((t) => t.includes('warning'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/keeps 1 token per KV head of a 5-token prompt; give a token count/);
    policy('h2o(budget=0.2)').setPromptLength(6);
    expect(stderr.mock.calls.filter((c) => String(c[0]).includes('warning'))).toHaveLength(1); // once
  });

  it('says nothing when the budget keeps enough tokens or is a count the user chose', () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    policy('h2o(budget=0.2)').setPromptLength(500);
    policy('h2o(budget=2)').setPromptLength(5);
    expect(stderr).not.toHaveBeenCalled();
  });
});
