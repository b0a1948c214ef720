import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { STORIES_BIN } from '../engine/helpers.js';
import { CLI, expectCleanFailure, kvpack } from './run.js';

// Cases a fuzzing pass over the command line found crashing (internal error, exit 70) or silently wrong.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-findings-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const store = path.join(tmp, 'store.jsonl');
fs.writeFileSync(store, `${JSON.stringify({
  key: 'k', model: 'm', model_fingerprint: 'f', cache: 'full', task: 'ppl', params: { data: 'wikitext2' }, metrics: { ppl: 10 },
  memory: { kv_bytes_peak: 1, kv_bytes_per_token: 1, compression: 1, bits_per_value: 32 }, seconds: 1, seed: 0,
  versions: { kvpack: '0', node: 'v20' }, finished_at: '2026-01-01T00:00:00Z',
})}\n`);

describe('command-line findings of the fuzzing pass', () => {
  it('--top-p 0 keeps the most likely token (greedy) instead of crashing', () => {
    const greedy = kvpack('generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '12', 'Once upon a time');
    const p0 = kvpack('generate', '--model', STORIES_BIN, '--top-p', '0', '--max-tokens', '12', 'Once upon a time');
    expect(p0.stderr).not.toContain('internal error');
    expect(p0.code).toBe(0);
    expect(p0.stdout).toBe(greedy.stdout);
    expectCleanFailure(kvpack('generate', '--model', STORIES_BIN, '--top-p', '', 'Once'), '--top-p');
    expectCleanFailure(kvpack('generate', '--model', STORIES_BIN, '--temperature', '', 'Once'), '--temperature');
  });

  it('names of Object.prototype are task parameters like any other: unknown', () => {
    for (const word of ['__proto__=1', 'constructor=1', 'toString=1']) {
      expectCleanFailure(kvpack('eval', 'ppl', 'data=wikitext2', word, '--model', STORIES_BIN), `"${word.split('=')[0]}"`);
    }
  });

  it('a sweep plan naming {constructor} or {toString} without defining it is refused', () => {
    for (const name of ['constructor', 'toString', '__proto__']) {
      const plan = path.join(tmp, `proto-${name}.json`);
      fs.writeFileSync(plan, JSON.stringify({ models: [STORIES_BIN], caches: [`h2o(budget={${name}})`], tasks: [{ task: 'ppl', data: 'stories260k', ctx: 64, chunks: 1 }] }));
      expectCleanFailure(kvpack('sweep', plan, '--dry-run'), `{${name}}`, 'does not define');
    }
  });

  it('report --out on a file, under a file: one typed line each', () => {
    const file = path.join(tmp, 'a-file');
    fs.writeFileSync(file, 'x');
    expectCleanFailure(kvpack('report', '--store', store, '--out', file), 'EEXIST');
    expectCleanFailure(kvpack('report', '--store', store, '--out', path.join(file, 'sub')), 'ENOTDIR');
  });

  it('--threads beyond the cores is refused before anything is allocated', () => {
    for (const t of ['100000', '1e308', '0', '1.5']) {
      const r = kvpack('generate', '--model', STORIES_BIN, '--threads', t, '--max-tokens', '2', 'Once');
      expectCleanFailure(r, '--threads', `[1, ${os.availableParallelism()}]`);
    }
  });

  it('seeds past 32 bits, NaN and fractions are refused, not aliased', () => {
    for (const s of ['4294967296', 'NaN', '1.5', '-1']) expectCleanFailure(kvpack('generate', '--model', STORIES_BIN, '--seed', s, 'Once'), '--seed');
    expect(kvpack('generate', '--model', STORIES_BIN, '--seed', '4294967295', '--max-tokens', '3', 'Once').code).toBe(0);
    // parseArgs words "--seed -1" over three lines: the CLI prints one
    expect(kvpack('generate', '--model', STORIES_BIN, '--seed', '-1', 'Once').stderr.trim().split('\n')).toHaveLength(1);
  });

  it('info --cache refuses what a session refuses, with the same message', () => {
    for (const spec of ['scissorhands()', 'scissorhands(mode=reference)+int(bits=4)']) {
      const session = kvpack('generate', '--model', STORIES_BIN, '--cache', spec, '--max-tokens', '2', 'Once');
      const info = kvpack('info', '--model', STORIES_BIN, '--cache', spec);
      expectCleanFailure(info);
      expect(info.stderr.replace('kvpack info: ', '')).toBe(session.stderr.replace('kvpack generate: ', ''));
    }
  });

  it('a closed pipe ends the output quietly', () => {
    // head exits after one byte while generate keeps writing: EPIPE on the next write
    const r = spawnSync('bash', ['-c', `"${process.execPath}" "${CLI}" generate --model "${STORIES_BIN}" --max-tokens 400 --temperature 1 Once | head -c 1 >/dev/null; echo "status \${PIPESTATUS[0]}" >&2`], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).not.toContain('EPIPE');
    expect(r.stderr).not.toContain('internal error');
    expect(r.stderr).toContain('status 0');
  });
});
