import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTables, renderMarkdown } from '../../src/eval/report.js';
import { ResultStore } from '../../src/eval/store.js';
import { expandCaches, parsePlan, planSweep, runSweep, type SweepEvent } from '../../src/eval/sweep.js';
import { loadModel } from '../../src/engine/model.js';
import { perplexity } from '../../src/eval/ppl.js';
import { STORIES_BIN } from '../engine/helpers.js';

describe('expandCaches', () => {
  const source = 'plan.json';

  it('expands {var} over the cartesian product; a spec without placeholders appears once', () => {
    const caches = expandCaches({
      source,
      caches: ['full', 'window(sinks=4,recent={b})', 'h2o(budget={b},recent={r})'],
      vars: { b: [0.5, 0.2], r: [0.05, 0.1] },
    });
    expect(caches).toEqual([
      'full',
      'window(sinks=4,recent=0.5)',
      'window(sinks=4,recent=0.2)',
      'h2o(budget=0.5,recent=0.05)',
      'h2o(budget=0.5,recent=0.1)',
      'h2o(budget=0.2,recent=0.05)',
      'h2o(budget=0.2,recent=0.1)',
    ]);
  });

  it('returns canonical specs without repeats', () => {
    expect(expandCaches({ source, caches: ['full+fp16', 'full', 'h2o(budget={b})+fp32'], vars: { b: [0.50] } })).toEqual([
      'full',
      'h2o(budget=0.5)+fp32',
    ]);
  });

  it('names the spec and the template when a spec does not parse, and an undefined var', () => {
    expect(() => expandCaches({ source, caches: ['tova(budgt={b})'], vars: { b: [0.2] } })).toThrow(/caches\[0\] "tova\(budgt=0.2\)" \(from "tova\(budgt=\{b\}\)"\)/);
    expect(() => expandCaches({ source, caches: ['h2o(budget={x})'], vars: {} })).toThrow(/uses \{x\}, which "vars" does not define/);
  });
});

describe('a sweep on stories260K', () => {
  let dir: string;
  let textFile: string;
  const loads: string[] = [];
  const load = (p: string) => {
    loads.push(p);
    return loadModel(p, { threads: 1 });
  };

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-sweep-'));
    textFile = path.join(dir, 'story.txt');
    const story =
      'Once upon a time, there was a little girl named Lily. She loved to play in the park with her friends. ' +
      'One day, she saw a big red ball under a tree. She ran to the ball and kicked it very high. ' +
      'Her friend Tom laughed and said, "Let us play together!" They played all day and were very happy.';
    fs.writeFileSync(textFile, `${story} ${story}`);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function plan(caches: string[]) {
    return parsePlan(
      {
        name: 'tiny',
        store: path.join(dir, 'tiny.jsonl'),
        models: [STORIES_BIN],
        caches,
        vars: { b: [0.25] },
        tasks: [{ task: 'ppl', data: textFile, ctx: 64, chunks: 1, mode: 'decode' }],
      },
      'tiny.json',
    );
  }

  it('runs each row once, appends it, and resumes without repeating work', async () => {
    const p = plan(['full', 'window(sinks=4,recent={b})']);
    const store = ResultStore.open(p.store);
    const events: SweepEvent[] = [];
    const first = await runSweep(p, { store, load, onProgress: (e) => events.push(e) });
    expect(first).toMatchObject({ rows: 2, ran: 2, skipped: 0 });
    expect(loads).toHaveLength(1); // the model is loaded once for both rows
    const planEvent = events.find((e) => e.type === 'plan');
    expect(planEvent).toMatchObject({ total: 128 });
    const advanced = events.reduce((n, e) => n + (e.type === 'advance' ? e.units : 0), 0);
    expect(advanced).toBe(128);

    const rows = ResultStore.open(p.store).rows();
    expect(rows.map((r) => r.cache)).toEqual(['full', 'window(sinks=4,recent=0.25)']);
    for (const r of rows) {
      expect(r.model).toBe(STORIES_BIN);
      expect(r.model_fingerprint).toMatch(/^[0-9a-f]{64}$/);
      expect(r.params).toEqual({ data: textFile, ctx: 64, chunks: 1, mode: 'decode' });
      expect(r.metrics.tokens).toBe(63);
      expect(r.metrics.ppl).toBeGreaterThan(1);
      expect(r.versions.node).toBe(process.version);
    }
    expect(rows[0]!.memory.compression).toBeCloseTo(1, 6);
    expect(rows[1]!.memory.compression).toBeGreaterThan(1.5); // 4 sinks + 16 recent of 64

    // Again, from a freshly opened store: nothing runs, nothing is appended, the model is not even loaded.
    const before = fs.readFileSync(p.store, 'utf8');
    const skips: number[] = [];
    const second = await runSweep(p, { store: ResultStore.open(p.store), load, onProgress: (e) => e.type === 'skip' && skips.push(e.units) });
    expect(second).toMatchObject({ rows: 2, ran: 0, skipped: 2 });
    expect(skips).toEqual([64, 64]);
    expect(loads).toHaveLength(1);
    expect(fs.readFileSync(p.store, 'utf8')).toBe(before);

    // The report has one table with both specs, and the Δ against full.
    const md = renderMarkdown(buildTables(rows));
    expect(md).toContain('| cache | ppl | Δ% vs full | KV bytes held | bytes/token | compression × vs fp16 | bits/value | transient peak |');
    expect(md).toContain('| `full` |');
    expect(md).toContain('| `window(sinks=4,recent=0.25)` |');
    expect(md.match(/^## /gm)).toHaveLength(1);

    // Adding a spec runs only the new row.
    const grown = plan(['full', 'window(sinks=4,recent={b})', 'h2o(budget={b})']);
    const planned = await planSweep(grown, { store: ResultStore.open(grown.store) });
    expect(planned.map((r) => r.done)).toEqual([true, true, false]);
  });

  it('a bad spec fails before anything runs, naming the spec', async () => {
    expect(() => plan(['full', 'h2o(budgt={b})'])).toThrow(/h2o\(budgt=0.25\)/);
    const good = plan(['full']);
    const bad = { ...good, store: path.join(dir, 'bad.jsonl'), caches: ['full', 'snapkv(budget=2.5.1)'] };
    const calls = loads.length;
    await expect(runSweep(bad, { store: ResultStore.open(bad.store), load })).rejects.toThrow(/snapkv\(budget=2.5.1\)/);
    expect(loads.length).toBe(calls);
    expect(fs.existsSync(bad.store)).toBe(false);
  });

  it("runs a plan's models with its attention and matmul settings, keyed apart from the defaults", async () => {
    const planned = (extra: Record<string, unknown>) => parsePlan(
      {
        name: 'modes', store: path.join(dir, 'modes.jsonl'), models: [STORIES_BIN], caches: ['int(bits=4)'],
        tasks: [{ task: 'ppl', data: textFile, ctx: 64, chunks: 1, mode: 'decode' }], ...extra,
      },
      'modes.json',
    );
    const exact = planned({});
    expect(exact.settings).toEqual({});
    expect(planned({ attention: 'exact', matmul: 'fast' }).settings).toEqual({}); // the defaults, spelled out
    const fast = planned({ attention: 'fast' });
    expect(fast.settings).toEqual({ attention: 'fast' });
    expect(() => planned({ attention: 'quick' })).toThrow('"attention" must be one of exact, fast, got "quick"');
    expect(() => planned({ matmul: 'int8' })).toThrow('"matmul" must be one of fast, exact, got "int8"');

    // the default load path: each plan's rows on a model loaded with its settings
    const store = ResultStore.open(exact.store);
    await runSweep(exact, { store, threads: 1 });
    const [fastRow] = await planSweep(fast, { store });
    expect(fastRow!.done).toBe(false); // the exact row does not stand in for the fast one
    await runSweep(fast, { store, threads: 1 });
    const [exactResult, fastResult] = ResultStore.open(exact.store).rows();
    expect(exactResult!.params).not.toHaveProperty('attention');
    expect(fastResult!.params).toMatchObject({ attention: 'fast' });
    expect(fastResult!.key).not.toBe(exactResult!.key);

    // the same numbers as the library's perplexity on a model loaded in each mode, which differ
    const libraryPpl = async (attention: 'exact' | 'fast') => {
      const model = await loadModel(STORIES_BIN, { threads: 1, attention });
      try {
        return perplexity(model, { data: textFile, ctx: 64, chunks: 1, mode: 'decode', cache: 'int(bits=4)' }).ppl;
      } finally {
        await model.close();
      }
    };
    const [pe, pf] = [await libraryPpl('exact'), await libraryPpl('fast')];
    expect(pf).not.toBe(pe);
    expect(exactResult!.metrics.ppl).toBe(pe);
    expect(fastResult!.metrics.ppl).toBe(pf);
  });

  it('rejects unknown tasks, parameters and missing data up front', () => {
    const base = { models: [STORIES_BIN], caches: ['full'] };
    expect(() => parsePlan({ ...base, tasks: [{ task: 'nope' }] }, 'p.json')).toThrow(/tasks\[0\]: unknown task "nope"/);
    expect(() => parsePlan({ ...base, tasks: [{ task: 'ppl', data: textFile, ctxx: 3 }] }, 'p.json')).toThrow(/no parameter "ctxx"/);
    expect(() => parsePlan({ ...base, tasks: [{ task: 'ppl', data: path.join(dir, 'missing.txt') }] }, 'p.json')).toThrow(/unknown data/);
    expect(() => parsePlan({ ...base, cache: ['full'], tasks: [] }, 'p.json')).toThrow(/unknown field "cache"/);
  });
});
