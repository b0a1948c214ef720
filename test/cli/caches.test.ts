import { describe, expect, it } from 'vitest';
import { CODECS, parseSpec, POLICIES } from '../../src/cache/registry.js';
import type { KindDescription } from '../../src/cli/caches.js';
import { expectCleanFailure, kvpack } from './run.js';

const listed = () => {
  const r = kvpack('caches', '--json');
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as KindDescription);
};

describe('kvpack caches', () => {
  it('lists every policy and codec a spec may name, with each parameter the schema declares and its default', () => {
    const kinds = listed();
    expect(kinds.filter((k) => k.kind === 'policy').map((k) => k.name)).toEqual([...POLICIES.keys()]);
    expect(kinds.filter((k) => k.kind === 'codec').map((k) => k.name)).toEqual([...CODECS.keys()]);
    for (const k of kinds) {
      const schema = (k.kind === 'policy' ? POLICIES : CODECS).get(k.name)!.schema;
      expect(k.params.map((p) => p.name)).toEqual(Object.keys(schema.params));
      for (const p of k.params) expect(p.default, `${k.name}.${p.name}`).toEqual(schema.params[p.name]!.default);
    }
    const h2o = kinds.find((k) => k.name === 'h2o')!;
    expect(h2o.params.find((p) => p.name === 'budget')).toMatchObject({ required: true });
    expect(kinds.find((k) => k.name === 'int')!.params.find((p) => p.name === 'bits')).toMatchObject({ default: 4, range: 'one of 2, 3, 4, 8' });
  });

  it('each range it prints is what the spec parser enforces: a value outside it is refused in those words', () => {
    for (const k of listed()) {
      for (const p of k.params) {
        expect(p.range, `${k.name}.${p.name}`).toBeDefined();
        const required = k.params.filter((q) => q.required && q.name !== p.name).map((q) => `${q.name}=8`);
        const part = `${k.name}(${[...required, `${p.name}=-99999`].join(',')})`;
        expect(() => parseSpec(k.kind === 'policy' ? part : `full+${part}`), part).toThrow(`must be ${p.range!}`);
      }
    }
  });

  it('names the paper of every method (the baselines full, random and the plain float codecs have none)', () => {
    const kinds = listed();
    const without = kinds.filter((k) => !k.paper).map((k) => k.name);
    expect(without.sort()).toEqual(['bf16', 'fp16', 'fp32', 'full', 'random']);
    expect(kinds.find((k) => k.name === 'h2o')!.paper).toContain('arXiv:2306.14048');
    expect(kinds.find((k) => k.name === 'kvquant')!.paper).toContain('arXiv:2401.18079');
    expect(kinds.find((k) => k.name === 'window')!.paper).toContain('arXiv:2309.17453');
  });

  it('prints text by default, one kind or several by name, and refuses a name it does not know', () => {
    const all = kvpack('caches');
    expect(all.code).toBe(0);
    for (const name of [...POLICIES.keys(), ...CODECS.keys()]) expect(all.stdout).toMatch(new RegExp(`^${name}\\b.* — `, 'm'));
    expect(all.stdout).toMatch(/^fp16 \(the default codec\) — /m);
    expect(all.stdout).toMatch(/^ {2}budget \(required\) +tokens kept per KV head/m);
    const one = kvpack('caches', 'kvquant');
    expect(one.stdout).toMatch(/^kvquant — /m);
    expect(one.stdout).toMatch(/^ {2}bits=4 +bits per code\n {25}one of 2, 3, 4$/m);
    expect(one.stdout).not.toContain('h2o');
    expectCleanFailure(kvpack('caches', 'h2', 'int'), 'no policy or codec named "h2"', 'policies: full, window, h2o');
    expect(kvpack('--help').stdout).toContain('caches');
  });
});
