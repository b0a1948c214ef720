import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { describeQueue, jobId, queueConnection, readJob, readResult, toJob } from '../../src/eval/queue.js';
import { ResultStore, type ResultRow } from '../../src/eval/store.js';
import { loadPlan, planSweep, runSweep } from '../../src/eval/sweep.js';
import { STORIES_BIN } from '../engine/helpers.js';
import { expectCleanFailure, kvpack as runKvpack } from '../cli/run.js';
import { Kvpack, TestRedis, TLS_CA, until } from './redis.js';

// Sweeps on a real Redis (started per test): kvpack sweep --queue as the coordinator, kvpack worker
// processes as the workers, all the built CLI as a user runs it.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-queue-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let redis: TestRedis | undefined;
const running: Kvpack[] = [];
afterEach(async ({ task }) => {
  // a failed test shows what each process said
  if (task.result?.state === 'fail') for (const p of running) console.log(`kvpack ${p.process.spawnargs.slice(2).join(' ')}:\n${p.stderr}`);
  for (const p of running.splice(0)) if (p.process.exitCode === null && p.process.signalCode === null) p.signal('SIGKILL');
  await redis?.stop();
  redis = undefined;
});

function kvpack(...args: string[]): Kvpack {
  const p = new Kvpack(args);
  running.push(p);
  return p;
}

function worker(...extra: string[]): Kvpack {
  return kvpack('worker', '--queue', redis!.url, '--threads', '1', ...extra);
}

/** A plan file in `dir` over stories260K (decode-mode perplexity: ~1 ms a token here). */
function writePlan(name: string, plan: Record<string, unknown>): string {
  const file = path.join(dir, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({ name, store: `${name}.jsonl`, models: [STORIES_BIN], ...plan }));
  return file;
}

function storeRows(planFile: string): ResultRow[] {
  const file = planFile.replace(/\.json$/, '.jsonl');
  return fs.existsSync(file) ? [...ResultStore.open(file).rows()] : [];
}

/** The lines of the store file: a key twice would show here (the store's reader keeps the first). */
function storeKeys(planFile: string): string[] {
  const file = planFile.replace(/\.json$/, '.jsonl');
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as ResultRow).key) : [];
}

async function plannedKeys(planFile: string): Promise<string[]> {
  const plan = loadPlan(planFile);
  return (await planSweep(plan, { store: ResultStore.open(path.join(dir, 'none.jsonl')) })).map((r) => r.key!);
}

/** The unit a worker's log says it started last (`worker: start MODEL · CACHE · TASK k=v …`). */
function lastStarted(log: string): string {
  const starts = [...log.matchAll(/^worker: start (.*)$/gm)];
  return starts[starts.length - 1]![1]!;
}

async function workersReady(...workers: Kvpack[]): Promise<void> {
  await until('workers ready', () => workers.every((w) => w.stderr.includes('worker: ready')));
}

describe('a sweep on the queue', () => {
  it('two workers finish a grid with the rows of a local run, value for value', async () => {
    // fast attention: the workers load the model as the plan says (int4's numbers differ in the two modes)
    const plan = {
      caches: ['full', 'window(sinks=4,recent={b})', 'h2o(budget={b})', 'int(bits=4)'],
      vars: { b: [16, 32] },
      tasks: [{ task: 'ppl', data: 'stories260k', ctx: 128, chunks: 2, mode: 'decode' }],
      attention: 'fast',
    };
    const localFile = writePlan('local', plan);
    const local = loadPlan(localFile);
    await runSweep(local, { store: ResultStore.open(local.store), threads: 1 });

    redis = await TestRedis.start();
    const queued = writePlan('queued', plan);
    const workers = [worker(), worker()];
    await workersReady(...workers);
    const sweep = kvpack('sweep', queued, '--queue', redis.url);
    expect(await sweep.exitCode(), sweep.stderr).toBe(0);

    // the same rows; only when they finished and how long they took differ
    const strip = (rows: ResultRow[]) => new Map(rows.map(({ seconds: _s, finished_at: _f, ...r }) => [r.key, r]));
    const want = strip(storeRows(localFile));
    expect(want.size).toBe(6);
    expect(strip(storeRows(queued))).toEqual(want);
    expect(storeKeys(queued)).toHaveLength(6);
    for (const w of workers) expect(w.stderr).toMatch(/^worker: done /m); // both took part

    // SIGTERM: each worker stops cleanly
    for (const w of workers) w.signal('SIGTERM');
    for (const w of workers) expect(await w.exitCode(), w.stderr).toBe(0);
    // run again: everything is in the store, nothing is enqueued
    const again = kvpack('sweep', queued, '--queue', redis.url);
    expect(await again.exitCode()).toBe(0);
    expect(again.stdout).toContain('0 rows run, 6 already in');
  });

  it('a worker killed mid-unit has its unit run elsewhere, and a restarted coordinator resumes: every row recorded once', async () => {
    redis = await TestRedis.start();
    const planFile = writePlan('kill', {
      caches: ['full', 'h2o(budget=32)', 'window(sinks=4,recent=32)'],
      // long units first (one each for both workers), then short ones
      tasks: [
        { task: 'ppl', data: 'stories260k', ctx: 512, chunks: 4, mode: 'decode' },
        { task: 'ppl', data: 'stories260k', ctx: 64, chunks: 1, mode: 'decode' },
      ],
    });
    const [doomed, survivor] = [worker('--lock-ms', '2000'), worker('--lock-ms', '2000')];
    await workersReady(doomed!, survivor!);
    const first = kvpack('sweep', planFile, '--queue', redis.url);
    await until('a unit started on the first worker', () => doomed!.stderr.includes('worker: start '));
    const killedUnit = lastStarted(doomed!.stderr);
    doomed!.signal('SIGKILL');
    // its lock lapses; the other worker's stalled-job check puts the unit back, and runs it
    await until('the killed unit run again', () => survivor!.stderr.includes(`worker: done ${killedUnit}`), 20_000);

    await until('a row recorded', () => storeKeys(planFile).length > 0);
    first.signal('SIGTERM'); // as a process manager restarts it
    await first.exitCode();
    const second = kvpack('sweep', planFile, '--queue', redis.url);
    expect(await second.exitCode(), second.stderr).toBe(0);

    const keys = storeKeys(planFile);
    expect(keys.sort()).toEqual((await plannedKeys(planFile)).sort()); // all six, none twice
    expect(keys).toHaveLength(6);
    // and no unit ran twice: the restarted coordinator took what finished meanwhile from Redis
    expect(survivor!.stderr.match(/^worker: done /gm)).toHaveLength(6);
    survivor!.signal('SIGTERM');
    expect(await survivor!.exitCode()).toBe(0);
  });

  it.each([
    ['with its append-only file', true],
    ['empty (no persistence: every job and result in it lost)', false],
  ])('Redis killed and restarted mid-sweep, %s: the sweep says it waits, then finishes with nothing lost', async (_, persist) => {
    redis = await TestRedis.start({ persist });
    const planFile = writePlan(persist ? 'restart' : 'restart-empty', {
      caches: ['h2o(budget={b})', 'window(sinks=4,recent={b})'],
      vars: { b: [8, 16, 32] },
      tasks: [{ task: 'ppl', data: 'stories260k', ctx: 256, chunks: 3, mode: 'decode' }],
    });
    const workers = [worker('--lock-ms', '2000'), worker('--lock-ms', '2000')];
    await workersReady(...workers);
    const sweep = kvpack('sweep', planFile, '--queue', redis.url);
    await until('a unit done', () => workers.some((w) => w.stderr.includes('worker: done ')));
    await redis.kill();
    await until('the sweep says it waits', () => sweep.stderr.includes('unreachable'));
    await redis.up();
    expect(await sweep.exitCode(), sweep.stderr).toBe(0);
    expect(sweep.stderr).toContain('waiting for it');
    expect(sweep.stderr).toContain('Redis is back');
    const keys = storeKeys(planFile);
    expect(keys.sort()).toEqual((await plannedKeys(planFile)).sort());
  });

  it('a worker whose model file differs refuses the unit; the sweep reports it failed, with the reason', async () => {
    redis = await TestRedis.start();
    // the plan's model.bin and the worker's model.bin (its own working directory) differ in one byte
    const here = fs.mkdtempSync(path.join(dir, 'coordinator-'));
    const there = fs.mkdtempSync(path.join(dir, 'worker-'));
    const bytes = fs.readFileSync(STORIES_BIN);
    fs.writeFileSync(path.join(here, 'model.bin'), bytes);
    bytes[bytes.length - 1] ^= 1;
    fs.writeFileSync(path.join(there, 'model.bin'), bytes);
    for (const d of [here, there]) fs.copyFileSync(path.join(path.dirname(STORIES_BIN), 'tok512.bin'), path.join(d, 'tok512.bin'));
    const planFile = path.join(here, 'other.json');
    fs.writeFileSync(planFile, JSON.stringify({ models: ['model.bin'], caches: ['full'], tasks: [{ task: 'ppl', data: 'stories260k', ctx: 32, chunks: 1 }] }));
    const w = new Kvpack(['worker', '--queue', redis.url, '--threads', '1'], there);
    running.push(w);
    const sweep = new Kvpack(['sweep', 'other.json', '--queue', redis.url, '--attempts', '2'], here);
    running.push(sweep);
    expect(await sweep.exitCode()).toBe(1);
    expect(sweep.stderr).toContain('1 of 1 rows failed');
    expect(sweep.stderr).toMatch(/model\.bin on this worker has fingerprint [0-9a-f]{16}, the plan's has [0-9a-f]{16}: a different model; unit refused/);
    expect(sweep.stderr).not.toContain('internal error');
    expect(w.stderr.match(/^worker: failed /gm)).toHaveLength(2); // tried twice, then reported
    expect(fs.existsSync(path.join(here, 'other.jsonl'))).toBe(false);

    // run again with a worker that has the plan's model: the failed unit is tried again, and recorded
    const right = new Kvpack(['worker', '--queue', redis.url, '--threads', '1'], here);
    running.push(right);
    w.signal('SIGTERM');
    const again = new Kvpack(['sweep', 'other.json', '--queue', redis.url], here);
    running.push(again);
    expect(await again.exitCode(), again.stderr).toBe(0);
    expect(storeKeys(path.join(here, 'other.json'))).toHaveLength(1);
    expect(right.stderr).toMatch(/^worker: done model\.bin · full · ppl/m);
  });

  it('SIGTERM mid-unit: the worker finishes the unit in hand (it is recorded), takes no other, and exits 0 (Redis with a password)', async () => {
    redis = await TestRedis.start({ password: 'pw-in-the-url' });
    const planFile = writePlan('term', { caches: ['full', 'h2o(budget=32)'], tasks: [{ task: 'ppl', data: 'stories260k', ctx: 512, chunks: 4, mode: 'decode' }] });
    const w = worker();
    await workersReady(w);
    const sweep = kvpack('sweep', planFile, '--queue', redis.url);
    await until('a unit started', () => w.stderr.includes('worker: start '));
    const unit = lastStarted(w.stderr);
    w.signal('SIGTERM');
    expect(await w.exitCode(), w.stderr).toBe(0);
    expect(w.stderr).toContain(`worker: done ${unit}`);
    expect(w.stderr.match(/^worker: start /gm)).toHaveLength(1);
    await until('its row recorded', () => storeKeys(planFile).length === 1);
    // another worker finishes the sweep
    const next = worker();
    expect(await sweep.exitCode(), sweep.stderr).toBe(0);
    expect(storeKeys(planFile)).toHaveLength(2);
    expect(next.stderr.match(/^worker: done /gm)).toHaveLength(1);
    for (const p of [w, sweep, next]) expect(p.stderr).not.toContain('pw-in-the-url');
  });

  it('TLS (rediss://): a sweep runs when the certificate verifies; a worker that cannot verify it says so and stops', async () => {
    redis = await TestRedis.start({ tls: true });
    const planFile = writePlan('tls', { caches: ['full', 'h2o(budget=16)'], tasks: [{ task: 'ppl', data: 'stories260k', ctx: 64, chunks: 1 }] });
    const trust = { NODE_EXTRA_CA_CERTS: TLS_CA };
    const w = new Kvpack(['worker', '--queue', redis.url, '--threads', '1'], undefined, trust);
    const sweep = new Kvpack(['sweep', planFile, '--queue', redis.url], undefined, trust);
    const untrusting = new Kvpack(['worker', '--queue', redis.url]);
    running.push(w, sweep, untrusting);
    expect(await sweep.exitCode(), sweep.stderr).toBe(0);
    expect(storeKeys(planFile)).toHaveLength(2);
    expect(await untrusting.exitCode()).toBe(1);
    expect(untrusting.stderr).toContain('its TLS certificate does not verify (self-signed certificate); if it is signed by your own CA, trust it with NODE_EXTRA_CA_CERTS');
  });

  it('a wrong password ends the sweep and the worker with one clear line each, not a wait', async () => {
    redis = await TestRedis.start({ password: 'right' });
    const url = `redis://:wrong@127.0.0.1:${redis.port}`;
    const planFile = writePlan('auth', { caches: ['full'], tasks: [{ task: 'ppl', data: 'stories260k', ctx: 32, chunks: 1 }] });
    for (const p of [kvpack('sweep', planFile, '--queue', url), kvpack('worker', '--queue', url)]) {
      expect(await p.exitCode()).toBe(1);
      expect(p.stderr).toMatch(/^kvpack (sweep|worker): Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:\d+ refused the credentials \(WRONGPASS/m);
      expect(p.stderr).not.toContain('wrong@');
      expect(p.stderr).not.toContain('internal error');
    }
  });
});

describe('the job a unit travels as', () => {
  async function oneRow() {
    const plan = loadPlan(writePlan('job', { caches: ['h2o(budget=16)'], tasks: [{ task: 'ppl', data: 'stories260k', ctx: 64, chunks: 1 }] }));
    return (await planSweep(plan, { store: ResultStore.open(path.join(dir, 'none.jsonl')) }))[0]!;
  }

  it('is plain data that reads back as the same unit', async () => {
    const row = await oneRow();
    const job = toJob(row);
    expect(JSON.parse(JSON.stringify(job))).toEqual(job);
    const { unit } = readJob(JSON.parse(JSON.stringify(job)));
    expect(unit.cache).toBe(row.cache);
    expect(unit.task.name).toBe('ppl');
    expect(unit.params).toEqual(row.params);
  });

  it('is refused when it is anything else, or its key does not match what it describes', async () => {
    const job = toJob(await oneRow());
    expect(() => readJob('rm -rf /')).toThrow('job data is not an object');
    expect(() => readJob({ ...job, code: 'process.exit()' })).toThrow('unknown field "code"');
    expect(() => readJob({ ...job, fingerprint: 'x' })).toThrow('"fingerprint" must be a sha256 in hex');
    expect(() => readJob({ ...job, cache: 'h2o(budgt=16)' })).toThrow(/h2o/);
    expect(() => readJob({ ...job, task: { task: 'shell', cmd: 'ls' } })).toThrow('unknown task "shell"');
    expect(() => readJob({ ...job, cache: 'h2o(budget=32)' })).toThrow('its key does not match');
    expect(() => readJob({ ...job, task: { ...job.task, ctx: 65 } })).toThrow('its key does not match');
    expect(() => readJob({ ...job, settings: { attention: 'fast' } })).toThrow('its key does not match');
    expect(() => readJob({ ...job, settings: { attention: 'fastest' } })).toThrow('"settings" must hold only attention');
    expect(() => readJob({ ...job, settings: { threads: 64 } })).toThrow('"settings" must hold only attention');
  });

  it("carries the plan's attention and matmul settings, in its key", async () => {
    const plan = loadPlan(writePlan('job-fast', { caches: ['h2o(budget=16)'], tasks: [{ task: 'ppl', data: 'stories260k', ctx: 64, chunks: 1 }], attention: 'fast', matmul: 'exact' }));
    const row = (await planSweep(plan, { store: ResultStore.open(path.join(dir, 'none.jsonl')) }))[0]!;
    const job = toJob(row);
    expect(job.settings).toEqual({ attention: 'fast', matmul: 'exact' });
    expect(readJob(JSON.parse(JSON.stringify(job))).unit.settings).toEqual({ attention: 'fast', matmul: 'exact' });
    const { settings: _, ...withoutSettings } = job;
    expect(() => readJob(withoutSettings)).toThrow('its key does not match');
    expect(toJob(await oneRow())).not.toHaveProperty('settings'); // plans at the defaults send none
  });

  it('has its result checked before it becomes a row', () => {
    const result = { metrics: { ppl: 2 }, memory: { kv_bytes_peak: 1, kv_bytes_per_token: 1, compression: 1, bits_per_value: 32 }, seconds: 1, versions: { kvpack: '0', node: 'v20' }, finished_at: 'now' };
    expect(readResult(result)).toEqual(result);
    expect(readResult({ ...result, metrics: { ppl: 'high' } })).toBeUndefined();
    expect(readResult(null)).toBeUndefined();
  });

  it('ids: BullMQ reserves ":", escaped so distinct keys stay distinct ids', () => {
    expect(jobId('ab|full|ppl|data="x"')).toBe('ab|full|ppl|data="x"');
    expect(jobId('a:b')).not.toContain(':');
    expect(jobId('a:b')).not.toBe(jobId('a%3Ab'));
  });

  it('URLs: redis:// and rediss:// only; a password never shows in messages', () => {
    expect(queueConnection('rediss://:secret@example.org:6380').url).toBe('rediss://:secret@example.org:6380');
    expect(() => queueConnection('http://127.0.0.1:6379')).toThrow('redis:// or rediss://');
    expect(() => queueConnection('127.0.0.1:6379')).toThrow(/redis:\/\/|Redis URL/);
    expect(describeQueue('redis://:secret@127.0.0.1:6379/2')).not.toContain('secret');
  });
});

describe('the command line', () => {
  it('refuses a worker without a Redis URL, a URL that is not Redis, and --attempts without --queue', () => {
    const planFile = writePlan('usage', { caches: ['full'], tasks: [{ task: 'ppl', data: 'stories260k', ctx: 32, chunks: 1 }] });
    for (const [args, phrase] of [
      [['worker'], 'worker needs --queue redis://HOST:PORT'],
      [['worker', '--queue', 'http://127.0.0.1:6379'], 'must be a redis:// or rediss:// URL'],
      [['sweep', planFile, '--attempts', '2'], '--attempts goes with --queue'],
      [['sweep', planFile, '--queue', 'redis://127.0.0.1:6379', '--threads', '1'], '--threads does not go with --queue'],
      [['sweep', planFile, '--queue', 'redis://u:secret@[::1'], '--queue must be a Redis URL'],
    ] as const) {
      const r = runKvpack(...args);
      expectCleanFailure(r, phrase);
      expect(r.code).toBe(2);
      expect(r.stderr).not.toContain('secret');
    }
  });
});
