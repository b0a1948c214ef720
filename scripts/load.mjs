#!/usr/bin/env node
// Load test of `kvpack serve` on loopback (npm run load [-- --quick]): first the batched decode step
// alone (CPU time for 1..16 sessions in one pass), then streaming requests at 1, 4, 8 and 16 at once with full+fp16 and with h2o(budget=0.2)+kvquant(bits=3) under one --max-kv-bytes,
// on the SmolLM2-135M shape with random weights; then how many 4K-token sessions each cache admits
// at once in the same budget. The "mixed" row has each request name its own cache (many distinct specs)
// and a fifth of the clients go away mid-stream; every row reports the server's RSS before and after.
// Bounded: every cell runs for a fixed time and every request is capped.
// Options: --quick, --seconds S, --streams 1,4,..., --threads T, --json, --model ID (a bench model id,
// default 135m-f16), --caches LIST (comma-separated rows; "mixed" among them), --skip-admission.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { defaultCacheDir, MODEL_SPECS } from '../dist/bench/models.js';
import { loadModel } from '../dist/engine/model.js';
import { kvBytesPerToken } from '../dist/model/config.js';
import { Progress } from '../dist/util/progress.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    seconds: { type: 'string' },
    streams: { type: 'string' },
    threads: { type: 'string' },
    json: { type: 'boolean' },
    model: { type: 'string' },
    caches: { type: 'string' },
    'skip-admission': { type: 'boolean' },
  },
});
const quick = values.quick === true;
const CACHES = values.caches ? values.caches.split(',') : ['full+fp16', 'h2o(budget=0.2)+kvquant(bits=3)', 'mixed'];
/** What the mixed row's requests name: fixed specs, and an h2o budget of its own per request (issue 22: memory per distinct spec). */
const MIXED = ['full+fp16', 'h2o(budget=0.2)+kvquant(bits=3)', 'window(sinks=4,recent=60)+fp16', 'kvquant(bits=4)', 'snapkv(budget=0.3)+fp16', 'tova(budget=64)'];
/** In the mixed row, one request in this many is abandoned once its first text arrives. */
const DISCONNECT_EVERY = 5;
const STREAMS = (values.streams ?? (quick ? '1,4' : '1,4,8,16')).split(',').map(Number);
const SECONDS = Number(values.seconds ?? (quick ? 8 : 60));
const PROMPT_TOKENS = quick ? 64 : 256;
const MAX_TOKENS = quick ? 16 : 64;
const log = (msg) => process.stderr.write(`load: ${msg}\n`);

const spec = MODEL_SPECS.find((m) => m.id === (values.model ?? '135m-f16'));
if (!spec) throw new Error(`--model: no bench model "${values.model}"; ids: ${MODEL_SPECS.map((m) => m.id).join(', ')}`);
const model = await spec.resolve(defaultCacheDir(), log);
const loaded = await loadModel(model.hfDir, { threads: 1 });
/** Budget: 16 full+fp16 sessions of prompt + max_tokens fit, so throughput cells are not memory-bound. */
const FP16_BYTES_PER_TOKEN = kvBytesPerToken(loaded.config, 2) + loaded.config.numLayers * loaded.config.numKvHeads * 4; // keys and values, and room for a position per (layer, KV head)
const BUDGET = 16 * (PROMPT_TOKENS + MAX_TOKENS) * FP16_BYTES_PER_TOKEN;
/** Admission: prompts of this many tokens, in a budget that holds ADMIT_FP16 full+fp16 sessions. */
const ADMIT_PROMPT = quick ? 256 : 4096;
/** Long enough that admitted sessions are still running while the next prompts are prefilled. */
const ADMIT_MAX_TOKENS = quick ? 64 : 2048;
const ADMIT_PREFILL_CHUNK = quick ? 32 : 256;
const ADMIT_FP16 = quick ? 1 : 4;
const ADMIT_BUDGET = ADMIT_FP16 * (ADMIT_PROMPT + ADMIT_MAX_TOKENS) * FP16_BYTES_PER_TOKEN;
const ADMIT_REQUESTS = ADMIT_FP16 * 6;
const ADMIT_SECONDS = quick ? 60 : 600;
/** Admission has stopped growing (the budget is full) when no request was admitted for this long. */
const ADMIT_STALL_SECONDS = quick ? 20 : 90;
/** How long freed sessions may take to show: a disconnect is noticed between steps, and a step may be long on a busy machine. */
const SETTLE_SECONDS = 60;

let modelId = '';
const loadStart = os.loadavg();

/** Starts `kvpack serve` on a free loopback port; resolves with its URL and a stop function (SIGTERM, exit code). */
async function startServer(cache, maxKvBytes, parallel, prefillChunk = 32) {
  const args = ['dist/cli/main.js', 'serve', '--model', model.hfDir, '--port', '0', '--cache', cache,
    '--max-kv-bytes', String(maxKvBytes), '--parallel', String(parallel), '--queue', '256', '--prefill-chunk', String(prefillChunk)];
  if (values.threads) args.push('--threads', values.threads);
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const url = await new Promise((resolve, reject) => {
    child.stderr.on('data', (d) => {
      stderr += d;
      const m = / on (http:\/\/\S+) /.exec(stderr);
      if (m) resolve(m[1]);
    });
    child.once('exit', (code) => reject(new Error(`kvpack serve exited with ${code}: ${stderr}`)));
  });
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  const rss = () => {
    try {
      return Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))[1]) * 1024;
    } catch {
      return NaN; // not Linux
    }
  };
  const models = await (await fetch(`${url}/v1/models`)).json();
  modelId = models.data[0].id;
  return { url, rss, stop: async () => (child.kill('SIGTERM'), exited) };
}

/** Plain token ids of the model's vocabulary (no control tokens), a different prompt per seed. */
function promptIds(length, seed) {
  let x = seed * 2654435761 % 2 ** 32 || 1;
  return Array.from({ length }, () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return model.firstPlainToken + (x % (model.vocabSize - model.firstPlainToken));
  });
}

/** One streaming completion; returns tokens generated, the gaps between text chunks (ms) and the HTTP status. */
async function streamOnce(url, prompt, maxTokens, signal, options = {}) {
  const result = { status: 0, tokens: 0, gaps: [], left: false };
  const leave = new AbortController();
  if (signal) signal.addEventListener('abort', () => leave.abort(), { once: true });
  let response;
  try {
    response = await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: leave.signal,
      body: JSON.stringify({
        model: modelId, prompt, max_tokens: maxTokens, temperature: 0.8, seed: 1, stream: true, stream_options: { include_usage: true },
        ...(options.cache ? { kv_cache: options.cache } : {}),
      }),
    });
  } catch {
    return result; // aborted before an answer
  }
  result.status = response.status;
  if (!response.ok) {
    await response.text();
    return result;
  }
  let last;
  let buffer = '';
  const decoder = new TextDecoder();
  try {
    for await (const bytes of response.body) {
      buffer += decoder.decode(bytes, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
        const event = JSON.parse(line.slice(6));
        if (event.error) result.status = 500;
        if (event.usage) result.tokens = event.usage.completion_tokens;
        if (event.choices?.[0]?.text) {
          const now = performance.now();
          if (last !== undefined) result.gaps.push(now - last);
          last = now;
          if (options.disconnect) {
            result.left = true;
            leave.abort();
          }
        }
      }
    }
  } catch {
    // aborted mid-stream
  }
  return result;
}

/** Samples /metrics every 250 ms until stopped. */
function sampleMetrics(url) {
  const samples = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      samples.push(await readMetrics(url));
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  return { samples, stop: async () => { running = false; await loop; } };
}

async function readMetrics(url) {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = (name) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
  return { kvBytes: value('kvpack_kv_bytes'), kvBytesPeak: value('kvpack_kv_bytes_peak'), sessions: value('kvpack_sessions'), admitted: value('kvpack_sessions_admitted_total') };
}

/** /metrics once no session is left, or after SETTLE_SECONDS. */
async function settled(url) {
  const t0 = performance.now();
  for (;;) {
    const m = await readMetrics(url);
    if (m.sessions === 0 || performance.now() - t0 > SETTLE_SECONDS * 1000) return m;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const quantile = (xs, q) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

/** `streams` clients, each issuing streaming requests back to back for SECONDS; in-flight ones finish. */
async function throughputCell(server, cache, streams, progress) {
  const url = server.url;
  const rssBefore = server.rss();
  const metrics = sampleMetrics(url);
  const before = await readMetrics(url);
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  const results = [];
  await Promise.all(Array.from({ length: streams }, async (_, w) => {
    for (let i = 0; performance.now() < deadline; i++) {
      const n = 1000 * w + i + 1;
      // mixed: each request its own cache (an h2o budget no other request used, every third one) and every fifth client leaves early
      const options = cache !== 'mixed' ? {} : {
        cache: n % 3 === 0 ? `h2o(budget=${16 + ((n * 7) % 400)})` : MIXED[n % MIXED.length],
        disconnect: n % DISCONNECT_EVERY === 0,
      };
      results.push(await streamOnce(url, promptIds(PROMPT_TOKENS, n), MAX_TOKENS, undefined, options));
      progress.tick();
    }
  }));
  const seconds = (performance.now() - t0) / 1000;
  await metrics.stop();
  const after = await settled(url);
  const gaps = results.flatMap((r) => r.gaps);
  return {
    streams,
    tokens_per_s: results.reduce((s, r) => s + r.tokens, 0) / seconds,
    gap_p50_ms: quantile(gaps, 0.5),
    gap_p99_ms: quantile(gaps, 0.99),
    requests: results.length,
    max_sessions: Math.max(...metrics.samples.map((s) => s.sessions)),
    admitted: after.admitted - before.admitted,
    status_5xx: results.filter((r) => r.status >= 500 || r.status === 0).length,
    status_4xx: results.filter((r) => r.status >= 400 && r.status < 500).length,
    kv_bytes_max_sample: Math.max(...metrics.samples.map((s) => s.kvBytes)),
    kv_bytes_peak: after.kvBytesPeak,
    samples_over_budget: metrics.samples.filter((s) => !(s.kvBytes <= BUDGET)).length,
    disconnects: results.filter((r) => r.left).length,
    rss_before: rssBefore,
    rss_after: server.rss(),
    sessions_after: after.sessions,
  };
}

/** ADMIT_REQUESTS long requests at once; the most sessions running together before the time runs out. */
async function admissionCell(cache) {
  const server = await startServer(cache, ADMIT_BUDGET, ADMIT_REQUESTS, ADMIT_PREFILL_CHUNK);
  const metrics = sampleMetrics(server.url);
  const controller = new AbortController();
  const requests = Array.from({ length: ADMIT_REQUESTS }, (_, i) => streamOnce(server.url, promptIds(ADMIT_PROMPT, 7000 + i), ADMIT_MAX_TOKENS, controller.signal));
  const t0 = performance.now();
  let best = 0;
  let admitted = 0;
  let lastAdmission = t0;
  while (performance.now() - t0 < ADMIT_SECONDS * 1000 && performance.now() - lastAdmission < ADMIT_STALL_SECONDS * 1000) {
    await new Promise((r) => setTimeout(r, 500));
    const m = await readMetrics(server.url);
    best = Math.max(best, m.sessions);
    if (m.admitted > admitted) [admitted, lastAdmission] = [m.admitted, performance.now()];
    if (best === ADMIT_REQUESTS || m.admitted === ADMIT_REQUESTS) break;
  }
  controller.abort();
  await Promise.all(requests);
  const after = await settled(server.url);
  await metrics.stop();
  const code = await server.stop();
  return {
    cache, concurrent_sessions: best, seconds: (performance.now() - t0) / 1000, sessions_after: after.sessions,
    kv_bytes_max_sample: Math.max(...metrics.samples.map((s) => s.kvBytes)), exit_code: code,
  };
}

/**
 * The batched decode step alone, in this process: CPU time per step for B sessions decoding together
 * (one forward pass, one matmul row per session); what the server can gain from batching at best.
 */
async function decodeBatchCells() {
  const m = loaded;
  const rows = [];
  for (const batch of [1, 2, 4, 8, 16]) {
    const sessions = Array.from({ length: batch }, () => m.session({ cache: 'full+fp16', chunkSize: 64 }));
    sessions.forEach((s, i) => s.feed(promptIds(64, 9000 + i)));
    const stepped = m.batch({ rows: batch, chunkSize: 1 });
    const steps = quick ? 3 : 10;
    const t0 = process.cpuUsage();
    for (let i = 0; i < steps; i++) stepped.decode(sessions, sessions.map((_, j) => promptIds(1, 100 * i + j)[0]));
    const t = process.cpuUsage(t0);
    const msPerStep = (t.user + t.system) / 1000 / steps;
    rows.push({ batch, cpu_ms_per_step: msPerStep, cpu_ms_per_token: msPerStep / batch });
    stepped.free();
    for (const s of sessions) s.dispose();
  }
  await m.close();
  return rows;
}

log('batched decode steps, 1 thread');
const decodeBatch = await decodeBatchCells();
const cells = [];
const progress = new Progress({ total: 0, label: 'load', unit: 'requests' });
for (const cache of CACHES) {
  const server = await startServer(cache === 'mixed' ? 'full+fp16' : cache, BUDGET, Math.max(...STREAMS));
  for (const streams of STREAMS) {
    log(`${cache}, ${streams} streams, ${SECONDS} s`);
    cells.push({ cache, ...(await throughputCell(server, cache, streams, progress)) });
  }
  const code = await server.stop();
  if (code !== 0) log(`kvpack serve exited with ${code} on SIGTERM`);
}
progress.done();
const admission = [];
for (const cache of values['skip-admission'] ? [] : CACHES.filter((c) => c !== 'mixed')) {
  log(`admission: ${ADMIT_REQUESTS} requests of ${ADMIT_PROMPT} prompt tokens, ${cache}, budget ${ADMIT_BUDGET} bytes`);
  admission.push(await admissionCell(cache));
}

const mb = (b) => (b / 2 ** 20).toFixed(1);
const lines = [
  'Batched decode step (one forward pass for B sessions, full+fp16 after a 64-token prompt, 1 thread, CPU time):',
  '',
  '| sessions | CPU ms per step | CPU ms per token | tokens per CPU-second vs 1 |',
  '|---|---|---|---|',
  ...decodeBatch.map((r) => `| ${r.batch} | ${r.cpu_ms_per_step.toFixed(1)} | ${r.cpu_ms_per_token.toFixed(1)} | ${(decodeBatch[0].cpu_ms_per_token / r.cpu_ms_per_token).toFixed(2)}× |`),
  '',
  `${model.label}, ${PROMPT_TOKENS}-token prompts, ${MAX_TOKENS} tokens each, ${SECONDS} s per row, --max-kv-bytes ${BUDGET} (${mb(BUDGET)} MiB)`,
  '',
  '| cache | streams | tokens/s | p50 gap ms | p99 gap ms | requests | left early | max sessions | 5xx | 4xx | max KV MiB sampled | KV peak MiB | server RSS MiB before → after | sessions after |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ...cells.map((c) => `| ${c.cache} | ${c.streams} | ${c.tokens_per_s.toFixed(1)} | ${c.gap_p50_ms.toFixed(1)} | ${c.gap_p99_ms.toFixed(1)} | ${c.requests} | ${c.disconnects} | ${c.max_sessions} | ${c.status_5xx} | ${c.status_4xx} | ${mb(c.kv_bytes_max_sample)} | ${mb(c.kv_bytes_peak)} | ${mb(c.rss_before)} → ${mb(c.rss_after)} | ${c.sessions_after} |`),
  '',
  `Admission: ${ADMIT_REQUESTS} requests of ${ADMIT_PROMPT} prompt tokens (max_tokens ${ADMIT_MAX_TOKENS}) at once, --max-kv-bytes ${ADMIT_BUDGET} (${mb(ADMIT_BUDGET)} MiB)`,
  '',
  '| cache | sessions at once | max KV MiB sampled | sessions after |',
  '|---|---|---|---|',
  ...admission.map((a) => `| ${a.cache} | ${a.concurrent_sessions} | ${mb(a.kv_bytes_max_sample)} | ${a.sessions_after} |`),
].slice(0, admission.length ? undefined : -5);
lines.push('', `Load average (1, 5, 15 min) at the start: ${loadStart.map((x) => x.toFixed(2)).join(', ')}; at the end: ${os.loadavg().map((x) => x.toFixed(2)).join(', ')}; ${os.availableParallelism()} cores.`);
const checks = [];
for (const c of cells) {
  if (c.status_5xx + c.status_4xx > 0) checks.push(`${c.cache} × ${c.streams}: ${c.status_5xx} 5xx and ${c.status_4xx} 4xx answers`);
  if (c.samples_over_budget > 0) checks.push(`${c.cache} × ${c.streams}: KV bytes over the budget in ${c.samples_over_budget} samples (max ${c.kv_bytes_max_sample})`);
  if (c.kv_bytes_peak > BUDGET) checks.push(`${c.cache} × ${c.streams}: kvpack_kv_bytes_peak ${c.kv_bytes_peak} over the budget`);
  if (c.sessions_after !== 0) checks.push(`${c.cache} × ${c.streams}: ${c.sessions_after} sessions left`);
}
for (const cache of CACHES) {
  const one = cells.find((c) => c.cache === cache && c.streams === 1);
  const eight = cells.find((c) => c.cache === cache && c.streams === 8);
  if (one && eight) lines.push('', `${cache}: 8 streams give ${(eight.tokens_per_s / one.tokens_per_s).toFixed(2)}× the throughput of 1 (aim ≥ 4×)`);
}
if (admission.length === 2) lines.push('', `admission: the compressed cache runs ${(admission[1].concurrent_sessions / admission[0].concurrent_sessions).toFixed(1)}× the sessions of full+fp16 at once (aim ≥ 4×)`);
for (const a of admission) if (a.kv_bytes_max_sample > ADMIT_BUDGET || a.sessions_after !== 0) checks.push(`admission ${a.cache}: over budget or sessions left`);
process.stdout.write(values.json ? JSON.stringify({ budget: BUDGET, decodeBatch, cells, admission, checks, loadStart, loadEnd: os.loadavg() }, null, 2) + '\n' : lines.join('\n') + '\n');
if (checks.length) {
  process.stderr.write(`load: FAILED\n  ${checks.join('\n  ')}\n`);
  process.exitCode = 1;
}
