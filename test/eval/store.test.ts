import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResultStore, ROW_FORMAT, rowKey, StoreFormatError, type ResultRow } from '../../src/eval/store.js';

function row(cache: string, ppl: number): ResultRow {
  const params = { data: 'wikitext2', ctx: 64, mode: 'decode' };
  return {
    format: ROW_FORMAT,
    key: rowKey('ab'.repeat(32), cache, 'ppl', params),
    model: 'm',
    model_fingerprint: 'ab'.repeat(32),
    cache,
    task: 'ppl',
    params,
    metrics: { ppl, tokens: 63, chunks: 1 },
    memory: { kv_bytes_peak: 1000, kv_bytes_per_token: 15.6, bits_per_value: 32, compression: 1 },
    seconds: 0.1,
    seed: 0,
    versions: { kvpack: '0.0.0', node: process.version },
    finished_at: new Date(0).toISOString(),
  };
}

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-store-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('ResultStore', () => {
  it('round-trips rows through the file, one JSON line each', () => {
    const file = path.join(dir, 'sub/results.jsonl');
    const store = ResultStore.open(file);
    expect(store.rows()).toEqual([]);
    expect(fs.existsSync(file)).toBe(false); // created on the first append, not by opening
    const a = row('full', 10);
    const b = row('h2o(budget=0.2)', 11);
    store.append(a);
    store.append(b);
    expect(store.has(a.key)).toBe(true);
    expect(fs.readFileSync(file, 'utf8').split('\n')).toHaveLength(3);
    const again = ResultStore.open(file);
    expect(again.rows()).toEqual([a, b]);
    expect(again.has(b.key)).toBe(true);
    expect(again.has(row('tova(budget=0.2)', 1).key)).toBe(false);
  });

  it('ignores a truncated last line, and cuts it off before the next append', () => {
    const file = path.join(dir, 'r.jsonl');
    const a = row('full', 10);
    const partial = JSON.stringify(row('h2o(budget=0.2)', 11)).slice(0, 40);
    fs.writeFileSync(file, `${JSON.stringify(a)}\n${partial}`);
    const store = ResultStore.open(file);
    expect(store.rows()).toEqual([a]);
    expect(fs.readFileSync(file, 'utf8').endsWith(partial)).toBe(true); // opening does not write
    const b = row('tova(budget=0.2)', 12);
    store.append(b);
    expect(ResultStore.open(file).rows()).toEqual([a, b]);
    expect(fs.readFileSync(file, 'utf8')).toBe(`${JSON.stringify(a)}\n${JSON.stringify(b)}\n`);
  });

  it('keeps a complete last row that only lacks its newline', () => {
    const file = path.join(dir, 'r.jsonl');
    const a = row('full', 10);
    const b = row('h2o(budget=0.2)', 11);
    fs.writeFileSync(file, JSON.stringify(a));
    const store = ResultStore.open(file);
    expect(store.rows()).toEqual([a]);
    store.append(b);
    expect(ResultStore.open(file).rows()).toEqual([a, b]);
  });

  it('reads rows of the first shape, the cache numbers at the top level, into memory', () => {
    const file = path.join(dir, 'r.jsonl');
    const a = row('full+fp32', 10);
    const { memory, format: _, ...rest } = a;
    fs.writeFileSync(file, `${JSON.stringify({ ...rest, cache: 'full', key: rowKey(a.model_fingerprint, 'full', 'ppl', a.params), ...memory, compression: 2 })}\n`);
    expect(ResultStore.open(file).rows()).toEqual([a]);
  });

  it('reads rows written when a spec without a codec meant fp32 in today\'s spec text, against fp16, under the key a plan makes now', () => {
    const file = path.join(dir, 'r.jsonl');
    const old = (cache: string, compression: number) => {
      const { format: _, ...r } = row(cache, 10);
      return JSON.stringify({ ...r, memory: { ...r.memory, compression } });
    };
    fs.writeFileSync(file, `${old('full', 1)}\n${old('full+fp16', 2)}\n${old('h2o(budget=0.2)', 5)}\n${old('qhitter(budget=0.2)', 40)}\n`);
    const rows = ResultStore.open(file).rows();
    expect(rows.map((r) => r.cache)).toEqual(['full+fp32', 'full', 'h2o(budget=0.2)+fp32', 'qhitter(budget=0.2)']);
    expect(rows.map((r) => r.memory.compression)).toEqual([0.5, 1, 2.5, 20]);
    for (const r of rows) expect(r.key).toBe(rowKey(r.model_fingerprint, r.cache, r.task, r.params));
    expect(rows.every((r) => r.format === ROW_FORMAT)).toBe(true);
  });

  it('refuses a broken line in the middle, naming the line', () => {
    const file = path.join(dir, 'r.jsonl');
    fs.writeFileSync(file, `${JSON.stringify(row('full', 1))}\n{oops\n${JSON.stringify(row('h2o(budget=0.2)', 1))}\n`);
    expect(() => ResultStore.open(file)).toThrow(StoreFormatError);
    expect(() => ResultStore.open(file)).toThrow(/line 2/);
  });

  it('keys do not depend on the order parameters were written in', () => {
    const fp = 'cd'.repeat(32);
    expect(rowKey(fp, 'full', 'ppl', { ctx: 64, data: 'x', mode: 'decode' })).toBe(rowKey(fp, 'full', 'ppl', { mode: 'decode', data: 'x', ctx: 64 }));
    expect(rowKey(fp, 'full', 'ppl', { ctx: 64 })).not.toBe(rowKey(fp, 'full', 'ppl', { ctx: 128 }));
    expect(rowKey(fp, 'full', 'ppl', { ctx: 64 })).not.toBe(rowKey('ef'.repeat(32), 'full', 'ppl', { ctx: 64 }));
  });
});
