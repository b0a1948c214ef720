import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseSpec } from '../../src/cache/registry.js';
import { ResultStore, ROW_FORMAT, rowKey, StoreLockedError, type ResultRow } from '../../src/eval/store.js';
import { expandCaches, MAX_CACHE_SPECS } from '../../src/eval/sweep.js';
import { STORIES_BIN } from '../engine/helpers.js';
import { CLI } from '../cli/run.js';

// Data findings of the fuzzing pass: two sweeps on one store, and plans whose vars explode.

// counts the specs a plan's expansion parses (the work it does), in place of timing it
vi.mock('../../src/cache/registry.js', async (importOriginal) => {
  const actual = await importOriginal<typeof import('../../src/cache/registry.js')>();
  return { ...actual, parseSpec: vi.fn(actual.parseSpec) };
});
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-concurrent-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function row(cache: string): ResultRow {
  const params = { data: 'x' };
  return {
    format: ROW_FORMAT, key: rowKey('ab'.repeat(32), cache, 'ppl', params), model: 'm', model_fingerprint: 'ab'.repeat(32), cache, task: 'ppl', params,
    metrics: { ppl: 2 }, memory: { kv_bytes_peak: 1, kv_bytes_per_token: 1, bits_per_value: 32, compression: 1 },
    seconds: 0, seed: 0, versions: { kvpack: '0', node: process.version }, finished_at: new Date(0).toISOString(),
  };
}

describe('one results store, two writers', () => {
  it('a second lock on a store is refused, naming the store; released, it can be taken again', () => {
    const file = path.join(dir, 'locked.jsonl');
    const a = ResultStore.open(file);
    const release = a.lock();
    expect(() => ResultStore.open(file).lock()).toThrow(StoreLockedError);
    expect(() => ResultStore.open(file).lock()).toThrow(/another sweep is writing to this store/);
    release();
    ResultStore.open(file).lock()();
  });

  it('appends are idempotent by key, even from two stores opened on one file', () => {
    const file = path.join(dir, 'twice.jsonl');
    const a = ResultStore.open(file);
    const b = ResultStore.open(file);
    expect(a.append(row('full'))).toBe(true);
    expect(b.append(row('full'))).toBe(false); // b sees what a wrote before appending
    expect(b.append(row('h2o(budget=4)'))).toBe(true);
    expect(a.append(row('h2o(budget=4)'))).toBe(false);
    expect(fs.readFileSync(file, 'utf8').trim().split('\n')).toHaveLength(2);
    expect(a.rows().map((r) => r.cache)).toEqual(['full', 'h2o(budget=4)']);
  });

  it('two sweep processes on one store: one runs, the other says the store is taken; no row twice', async () => {
    const store = path.join(dir, 'two.jsonl');
    const planFile = path.join(dir, 'two.json');
    fs.writeFileSync(planFile, JSON.stringify({
      store, models: [STORIES_BIN], caches: ['full', 'h2o(budget={b})'], vars: { b: [4, 8, 16] },
      tasks: [{ task: 'ppl', data: 'stories260k', ctx: 32, chunks: 1 }],
    }));
    const run = () => new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, 'sweep', planFile, '--threads', '1'], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('close', (code) => resolve({ code, stderr }));
    });
    const results = await Promise.all([run(), run()]);
    const keys = fs.readFileSync(store, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as ResultRow).key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys).toHaveLength(4);
    for (const r of results) {
      expect(r.stderr).not.toContain('internal error');
      if (r.code !== 0) expect(r.stderr).toContain('another sweep is writing to this store');
    }
  }, 60_000);
});

describe('plans whose vars explode', () => {
  beforeEach(() => {
    vi.mocked(parseSpec).mockClear();
  });

  it('are counted first and refused past the limit, before any spec is made', () => {
    const values = Array.from({ length: 1000 }, (_, i) => i + 1);
    expect(() => expandCaches({ source: 'p.json', caches: ['h2o(budget={a},recent={b})+int(bits={c},group={d})'], vars: { a: values, b: values, c: [2, 3, 4, 8], d: [32, 64, 128] } }))
      .toThrow(`the vars expand to 12000000 cache specs (caches[0]: 12000000); a plan may have at most ${MAX_CACHE_SPECS}`);
    expect(parseSpec).not.toHaveBeenCalled();
  });

  it('expand with one parse per spec (200 × 40)', () => {
    const a = Array.from({ length: 200 }, (_, i) => i + 41);
    const b = Array.from({ length: 40 }, (_, i) => i + 1);
    const specs = expandCaches({ source: 'p.json', caches: ['h2o(budget={a},recent={b})'], vars: { a, b } });
    expect(specs).toHaveLength(8000);
    expect(specs[0]).toBe('h2o(budget=41,recent=1)');
    expect(specs[1]).toBe('h2o(budget=41,recent=2)'); // the first var varies slowest
    expect(parseSpec).toHaveBeenCalledTimes(8000);
  });
});
