// AdaKV (heads=adakv), Expected Attention and KVzip from every entry point, with the same meaning.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../src/engine/model.js';
import { Trace } from '../../src/trace/read.js';
import { STORIES_BIN } from '../engine/helpers.js';
import { startServer } from '../server/helpers.js';
import { expectCleanFailure, kvpack, libraryGreedy } from './run.js';

const SPECS = ['h2o(budget=24,heads=adakv)', 'expected(budget=24)', 'expected(budget=24,heads=adakv)', 'kvzip(budget=24)'];
const PROMPT = 'Once upon a time there was a little girl who liked to play in the park with her dog.';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-scorers-'));

let model: Model;
let greedy: Map<string, string>;
beforeAll(async () => {
  model = await loadModel(STORIES_BIN, { threads: 1 });
  greedy = await libraryGreedy(model, SPECS, PROMPT, 30);
});
afterAll(async () => {
  await model?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe.each(SPECS)('%s from every entry point', (spec) => {
  it('generate: the library\'s greedy text, and the cache line (kvzip: its reconstruction cost)', () => {
    const r = kvpack('generate', '--model', STORIES_BIN, '--threads', '1', '--greedy', '--max-tokens', '30', '--cache', spec, PROMPT);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${PROMPT}${greedy.get(spec)}\n`);
    expect(r.stderr).toMatch(/KV cache: [\d.]+ KiB held/);
    if (spec.startsWith('kvzip')) expect(r.stderr).toMatch(/kvzip ran \d+ reconstruction pass(es)?: \d+ extra tokens through the model/);
  });

  it('ppl and eval ppl: the same perplexity', () => {
    const ppl = kvpack('ppl', '--model', STORIES_BIN, '--threads', '1', '--data', 'stories260k', '--chunks', '1', '--ctx', '128', '--cache', spec, '--json');
    expect(ppl.code, ppl.stderr).toBe(0);
    const a = JSON.parse(ppl.stdout) as { ppl: number; cache: string; policy_stats?: Record<string, number> };
    expect(a.cache).toBe(spec);
    expect(Number.isFinite(a.ppl)).toBe(true);
    if (spec.startsWith('kvzip')) expect(a.policy_stats!.reconstruction_tokens).toBeGreaterThan(0);
    const evaluated = kvpack('eval', 'ppl', 'data=stories260k', 'ctx=128', '--limit', '1', '--model', STORIES_BIN, '--threads', '1', '--cache', spec, '--json');
    expect(evaluated.code, evaluated.stderr).toBe(0);
    const b = JSON.parse(evaluated.stdout.trim().split('\n').at(-1)!) as { metrics: { ppl: number } };
    expect(b.metrics.ppl).toBeCloseTo(a.ppl, 10);
  });

  it('trace: records what each head holds', () => {
    const out = path.join(tmp, `${spec.replace(/\W+/g, '-')}.trace.jsonl`);
    const r = kvpack('trace', '--threads', '1', '--cache', spec, '--prompt', PROMPT, '--max-tokens', '30', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    const trace = Trace.parse(fs.readFileSync(out, 'utf8'));
    expect(trace.runs[0]!.info.spec).toBe(spec);
  });
});

describe('the new kinds elsewhere', () => {
  it('kvpack caches lists them with their papers and parameters', () => {
    const r = kvpack('caches');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^expected — Expected Attention/m);
    expect(r.stdout).toMatch(/^kvzip — KVzip/m);
    expect(r.stdout).toContain('arXiv:2510.00636');
    expect(r.stdout).toContain('arXiv:2505.23416');
    expect(r.stdout).toContain('heads=uniform');
  });

  it('refuses heads=adakv with streaming, in one line', () => {
    expectCleanFailure(kvpack('generate', '--model', STORIES_BIN, '--threads', '1', '--max-tokens', '2', '--streaming', '--cache', 'snapkv(budget=16,heads=adakv)', 'x'), 'heads=adakv cannot stream');
  });

  it('serve: a request naming kv_cache gets it, with the cache\'s note', async () => {
    const server = await startServer(STORIES_BIN);
    try {
      const response = await fetch(`${server.url}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'stories260K', prompt: PROMPT, max_tokens: 30, temperature: 0, kv_cache: 'kvzip(budget=24)' }),
      });
      expect(response.status).toBe(200);
      const body = (await response.json()) as { choices: { text: string }[]; kv_cache: { spec: string; note?: string } };
      expect(body.kv_cache.spec).toBe('kvzip(budget=24)');
      expect(body.kv_cache.note).toMatch(/reconstruction pass/);
      expect(body.choices[0]!.text).toBe(greedy.get('kvzip(budget=24)'));
    } finally {
      await server.close();
    }
  });
});
