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

describe("README's first command", () => {
  it('is the one .ci/run runs, uses --compare, and prints what the README shows', () => {
    const first = /```sh\n(npm ci && npm run kvpack -- generate [^\n]*)\n/.exec(README)?.[1];
    expect(first).toBeDefined();
    expect(fs.readFileSync('.ci/run', 'utf8').split('\n')).toContain(first);
    expect(first).toContain('--compare');
    // its words, quotes removed, as the shell passes them
    const args = first!.replace(/^npm ci && npm run kvpack -- /, '').match(/"[^"]*"|\S+/g)!.map((a) => a.replace(/^"(.*)"$/, '$1'));
    const r = spawnSync(process.execPath, [path.resolve('dist/cli/main.js'), ...args], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const shown = /```\n(KV cache: [^\n]*)\n(vs full fp16 [^\n]*)\n```/.exec(README);
    expect(shown).not.toBeNull();
    expect(r.stderr).toContain(shown![1]); // the bytes, exactly
    const numbers = (line: string) => /top-1 agreement ([\d.]+)% \((\d+)\/(\d+)\), KL ([\d.]+) nats/.exec(line)!.slice(1).map(Number);
    const [top1, agree, of, kl] = numbers(/^vs full fp16 .*$/m.exec(r.stderr)![0]);
    const [shownTop1, shownAgree, shownOf, shownKl] = numbers(shown![2]!);
    expect([top1, agree, of]).toEqual([shownTop1, shownAgree, shownOf]);
    expect(kl).toBeCloseTo(shownKl!, 3); // summation order may differ with the thread count
  });
});
