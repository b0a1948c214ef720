import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Trace } from '../../src/trace/read.js';
import { serveTrace } from '../../src/trace/serve.js';
import { expectCleanFailure, kvpack } from '../cli/run.js';
import { head, rawRequest } from '../server/helpers.js';

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

  it('view opens a trace only: other files and headers the viewer cannot lay out get one line (issue 22)', () => {
    const header = (layers: unknown, kvHeads: unknown) => `{"type":"trace","format":"kvpack-trace","version":1,"model":"m","layers":${layers},"kvHeads":${kvHeads},"maxBytes":1000}\n`;
    const write = (name: string, text: string) => (fs.writeFileSync(path.join(tmp, name), text), path.join(tmp, name));
    expectCleanFailure(kvpack('view', '/etc/passwd', '--port', '0'), '/etc/passwd: not a kvpack trace');
    expectCleanFailure(kvpack('view', '/dev/zero', '--port', '0'), '/dev/zero: not a regular file');
    expectCleanFailure(kvpack('view', tmp, '--port', '0'), 'not a regular file');
    expectCleanFailure(kvpack('view', write('huge.trace.jsonl', header(1e8, 1)), '--port', '0'), "the header's layers must be an integer in 1..1024, got 100000000");
    expectCleanFailure(kvpack('view', write('wide.trace.jsonl', header(1000, 1000)), '--port', '0'), '1000 layers × 1000 KV heads, more than 65536');
    expectCleanFailure(kvpack('view', write('nan.trace.jsonl', header('"x"', 2)), '--port', '0'), "layers must be an integer");
  });

  it('view serves the checked trace to its own Host only', async () => {
    const viewer = await serveTrace(file, 0);
    try {
      const url = viewer.url.replace(/\/$/, '');
      const r = await rawRequest(url, head(url, 'GET', '/trace'));
      expect(r.status).toBe(200);
      expect(r.text.endsWith(fs.readFileSync(file, 'utf8'))).toBe(true);
      expect((await rawRequest(url, head(url, 'GET', '/trace', { host: `rebound.example:${new URL(url).port}` }))).status).toBe(421);
      expect((await rawRequest(url, head(url, 'GET', '/../../../../etc/passwd'))).text).not.toContain('root:');
    } finally {
      await viewer.close();
    }
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
