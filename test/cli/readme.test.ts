import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// The library example of README.md, saved in the checkout as the README says and run from elsewhere.
const README = fs.readFileSync('README.md', 'utf8');
const example = path.resolve(`readme-example-${process.pid}.mjs`);
afterAll(() => fs.rmSync(example, { force: true }));

describe('README library example', () => {
  it('runs as written from another directory, and its cache keeps real tokens (no tiny-budget warning)', () => {
    const code = /## Library[\s\S]*?```js\n([\s\S]*?)```/.exec(README)?.[1];
    expect(code).toBeDefined();
    fs.writeFileSync(example, code!);
    const r = spawnSync(process.execPath, [example], { encoding: 'utf8', timeout: 120_000, cwd: os.tmpdir() });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('warning');
    const m = /(\d+) bytes of KV cache for (\d+) tokens/.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    const [bytes, tokens] = [Number(m![1]), Number(m![2])];
    expect(tokens).toBeGreaterThan(32); // it generated past the budget, so eviction ran
    expect(bytes).toBeGreaterThan(0);
    expect(r.stdout).toMatch(/\d+ log-probabilities/);
  });
});
