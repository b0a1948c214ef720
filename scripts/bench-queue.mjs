#!/usr/bin/env node
// Sweep throughput on the Redis queue: one grid run by 1, 2 and 4 `kvpack worker` processes (and once
// locally, for reference), units per minute for each, with the load average. Needs `npm run build` and
// redis-server (Debian: apt-get install -y redis-server); starts its own Redis on a free loopback port.
//   node scripts/bench-queue.mjs [--workers 1,2,4] [--threads 1] [--ctx 512]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { workers: { type: 'string', default: '1,2,4' }, threads: { type: 'string', default: '1' }, ctx: { type: 'string', default: '512' } } });
const counts = values.workers.split(',').map(Number);
const CLI = path.resolve('dist/cli/main.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-bench-queue-'));

// The eviction comparison's grid (sweeps/eviction-ref6m.json) at two budgets, on one short chunk.
const plan = {
  name: 'bench',
  models: [path.resolve('../shared/models/ref-6m')],
  caches: ['full', 'window(sinks=4,recent={budget})', 'h2o(budget={budget})', 'tova(budget={budget})', 'snapkv(budget={budget})'],
  vars: { budget: [0.5, 0.2] },
  tasks: [{ task: 'ppl', data: 'wikitext2', ctx: Number(values.ctx), chunks: 1, mode: 'decode' }],
};

if (spawnSync('redis-server', ['--version']).error) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
const port = await new Promise((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port: p } = s.address();
    s.close(() => resolve(p));
  });
});
const redis = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes'], { stdio: ['ignore', 'pipe', 'inherit'] });
await new Promise((resolve) => redis.stdout.on('data', (d) => String(d).includes('Ready to accept') && resolve()));
const url = `redis://127.0.0.1:${port}`;

const load = () => os.loadavg()[0].toFixed(1);
const children = [];
function run(args, { wait = true } = {}) {
  const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => (err += d));
  children.push(p);
  const done = new Promise((resolve, reject) => p.on('exit', (code) => (code === 0 || !wait ? resolve(err) : reject(new Error(`kvpack ${args.join(' ')} exited ${code}:\n${err}`)))));
  return { p, done, stderr: () => err };
}

async function once(label, workers) {
  const planFile = path.join(dir, `${label}.json`);
  fs.writeFileSync(planFile, JSON.stringify({ ...plan, name: label }));
  const started = workers.length ? null : performance.now();
  const ws = workers.map(() => run(['worker', '--queue', url, '--threads', values.threads], { wait: false }));
  while (!ws.every((w) => w.stderr().includes('worker: ready'))) await new Promise((r) => setTimeout(r, 50));
  const loadBefore = load();
  const t0 = started ?? performance.now();
  await run(workers.length ? ['sweep', planFile, '--queue', url] : ['sweep', planFile, '--threads', values.threads]).done;
  const seconds = (performance.now() - t0) / 1000;
  for (const w of ws) w.p.kill('SIGTERM');
  await Promise.all(ws.map((w) => w.done));
  const units = fs.readFileSync(path.join(dir, `${label}.jsonl`), 'utf8').trim().split('\n').length;
  return { label, units, seconds, perMinute: (60 * units) / seconds, loadBefore, loadAfter: load() };
}

try {
  const rows = [await once('local', [])];
  for (const n of counts) rows.push(await once(`queue-${n}`, Array.from({ length: n })));
  console.log(`\nref-6m, ${plan.caches.length * 2 - 1} units (ppl wikitext2 ctx ${values.ctx}, 1 chunk, decode), --threads ${values.threads} per process, ${os.availableParallelism()} cores\n`);
  console.log('| run | units | wall s | units/min | load avg (1 min) before → after |');
  console.log('|---|---:|---:|---:|---|');
  for (const r of rows) {
    const name = r.label === 'local' ? 'local `kvpack sweep`' : `${r.label.slice(6)} worker${r.label.endsWith('-1') ? '' : 's'}`;
    console.log(`| ${name} | ${r.units} | ${r.seconds.toFixed(1)} | ${r.perMinute.toFixed(1)} | ${r.loadBefore} → ${r.loadAfter} |`);
  }
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  redis.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
}
