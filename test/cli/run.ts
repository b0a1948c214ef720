import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { expect } from 'vitest';

// The built CLI, as a user runs it (npm test builds first).
const CLI = path.resolve('dist/cli/main.js');

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
