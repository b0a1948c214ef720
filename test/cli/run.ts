import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect } from 'vitest';
import type { Model } from '../../src/engine/model.js';

// The built CLI, as a user runs it (npm test builds first).
export const CLI = path.resolve('dist/cli/main.js');

export function kvpack(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A user-facing failure: non-zero exit, one clear line naming the problem, no stack trace. */
export function expectCleanFailure(r: ReturnType<typeof kvpack>, ...phrases: string[]) {
  expect(r.code).not.toBe(0);
  expect(r.code).not.toBeNull(); // not killed by the timeout: no hang
  for (const p of phrases) expect(r.stderr).toContain(p);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).not.toContain('internal error');
}

/** The library's greedy continuation of `prompt` under each cache spec: what every entry point must print. */
export async function libraryGreedy(model: Model, specs: readonly string[], prompt: string, maxTokens: number): Promise<Map<string, string>> {
  const texts = new Map<string, string>();
  for (const spec of specs) {
    let text = '';
    for await (const piece of model.session({ cache: spec }).generate(prompt, { maxTokens, temperature: 0 })) text += piece;
    texts.set(spec, text);
  }
  return texts;
}

/** `ppl --json` and `eval ppl --json` on stories260K's own stories with one cache: they must agree. */
export function expectPplEqualsEvalPpl(model: string, spec: string, chunks: number): { ppl: number; cache: string } {
  const ppl = kvpack('ppl', '--model', model, '--threads', '1', '--data', 'stories260k', '--chunks', String(chunks), '--cache', spec, '--json');
  expect(ppl.code, ppl.stderr).toBe(0);
  const a = JSON.parse(ppl.stdout) as { ppl: number; cache: string };
  const evaluated = kvpack('eval', 'ppl', 'data=stories260k', '--limit', String(chunks), '--model', model, '--threads', '1', '--cache', spec, '--json');
  expect(evaluated.code, evaluated.stderr).toBe(0);
  const b = JSON.parse(evaluated.stdout.trim().split('\n').at(-1)!) as { metrics: { ppl: number } };
  expect(b.metrics.ppl).toBeCloseTo(a.ppl, 10);
  expect(Number.isFinite(a.ppl)).toBe(true);
  return a;
}
