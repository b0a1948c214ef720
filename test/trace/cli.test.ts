import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Trace } from '../../src/trace/read.js';
import { expectCleanFailure, kvpack } from '../cli/run.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-trace-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('kvpack trace, view and report', () => {
  const file = path.join(tmp, 'h2o-vs-kivi.trace.jsonl');

  it('says what each cache holds against the full fp16 cache: the default full is 1×, f32 half of that', () => {
    const r = kvpack('trace', '--threads', '1', '--cache', 'full', '--cache', 'full+fp32', '--prompt', 'Once upon a time', '--max-tokens', '2', '--out', path.join(tmp, 'full.trace.jsonl'));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/; full: 3 steps, [\d.]+ KiB held at the end \(1\.00× vs fp16\); full\+fp32: 3 steps, [\d.]+ KiB held at the end \(0\.50× vs fp16\)/);
  });

  it('records two caches on the same text and reports the size', () => {
    const r = kvpack('trace', '--threads', '1', '--cache', 'h2o(budget=16)', '--cache', 'full+int(kbits=2,vbits=2,kaxis=channel,vaxis=token,group=32)',
      '--prompt', 'Once upon a time there was a little girl who liked to play in the park with her dog.', '--max-tokens', '8', '--out', file);
    expect(r.stderr).toMatch(/wrote .*h2o-vs-kivi\.trace\.jsonl: [\d.]+ MB of at most 64, \d+ tokens; h2o\(budget=16\): 9 steps, [\d.]+ KiB held at the end \([\d.]+× vs fp16\); full\+int\(.*\): 9 steps/);
    expect(r.code).toBe(0);
    const trace = Trace.parse(fs.readFileSync(file, 'utf8'));
    expect(trace.runs.map((run) => run.steps.length)).toEqual([9, 9]);
    expect(trace.runs[1]!.info.errors).toBe(true);
  });

  it('refuses bad options with one clear line', () => {
    for (const [args, phrase] of [
      [['--cache', 'h2o(budget=16)', '--prompt', 'x'], 'needs --out'],
      [['--prompt', 'x', '--out', file], 'needs --cache'],
      [['--cache', 'h2o(budget=16)', '--prompt', 'x', '--data', 'wikitext2', '--out', file], 'either --prompt TEXT or --data'],
      [['--cache', 'h2o(budget=16)', '--data', 'nope', '--limit', '5', '--out', file], 'unknown data "nope"'],
      [['--cache', 'h2o(budgt=16)', '--prompt', 'x', '--out', file], 'budgt'],
      [['--cache', 'h2o(budget=16)', '--prompt', 'x', '--out', path.join(tmp, 'no/such/dir.jsonl')], 'no/such/dir.jsonl'],
    ] as const) {
      expectCleanFailure(kvpack('trace', ...args), phrase);
    }
    expectCleanFailure(kvpack('view', path.join(tmp, 'missing.trace.jsonl')), 'missing.trace.jsonl: no such trace file');
  });

  it('report lists the traces beside a results store, with the command that opens each', () => {
    const store = path.join(tmp, 'eviction.jsonl');
    fs.copyFileSync('results/eviction-ref6m.jsonl', store);
    const r = kvpack('report', '--store', store);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('## Cache traces');
    expect(r.stdout).toContain(`\`${file}\` — ref-6m`);
    expect(r.stdout).toMatch(/h2o\(budget=16\) \(9 steps\) vs full\+int\(.*\) \(9 steps\)/);
    expect(r.stdout).toContain(`open with \`kvpack view ${file}\``);
    const out = path.join(tmp, 'report');
    expect(kvpack('report', '--store', store, '--out', out).code).toBe(0);
    expect(fs.readFileSync(path.join(out, 'index.html'), 'utf8')).toMatch(/<section id="traces">[\s\S]*kvpack view [\s\S]*<\/section>\n<\/body>/);
  });
});
