// kvquant(calib=FILE) with the committed calibration file, from every entry point: the memory plan sizes
// the cache before the model exists, the file is read and checked when the cache is built for the model.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCalibration } from '../../src/cache/quant/calibfile.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { REF6M_DIR, STORIES_BIN } from '../engine/helpers.js';
import { spawnServe } from '../server/helpers.js';
import { expectPplEqualsEvalPpl } from '../cli/run.js';

const CLI = path.resolve('dist/cli/main.js');
const FILE = path.resolve('results/calibration/stories260K.fisher.calib');
const SPEC = `kvquant(bits=2,calib=${FILE})`; // a bare path
const CANONICAL = `full+${SPEC}`;
const PROMPT = 'Once upon a time';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-calib-entry-'));

const kvpack = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });

let model: Model;
let greedy: string;
beforeAll(async () => {
  model = await loadModel(STORIES_BIN, { threads: 1, cache: SPEC, context: 512 });
  const session = model.session({ cache: SPEC });
  greedy = '';
  for await (const piece of session.generate(PROMPT, { maxTokens: 12, temperature: 0 })) greedy += piece;
});
afterAll(async () => {
  await model?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('kvquant(calib=FILE) from every entry point', () => {
  it('the library: loadModel plans with it, a session runs with the file\'s thresholds and datatypes', () => {
    const session = model.session({ cache: SPEC });
    expect(session.cache.spec).toBe(CANONICAL);
    const ids = model.tokenizer.encode(PROMPT);
    const withFile = session.feed(ids).slice();
    const online = model.session({ cache: 'kvquant(bits=2)' }).feed(ids).slice();
    expect(withFile.every(Number.isFinite)).toBe(true);
    expect(withFile).not.toEqual(online); // the file is in use
  });

  it('generate: the same greedy text as the library', () => {
    const r = kvpack('generate', '--model', STORIES_BIN, '--threads', '1', '--greedy', '--max-tokens', '12', '--cache', SPEC, PROMPT);
    expect(r.stderr).not.toMatch(/needs to know|error/i);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${PROMPT}${greedy}\n`);
  });

  it('ppl and eval ppl: the same perplexity', () => {
    expect(expectPplEqualsEvalPpl(STORIES_BIN, SPEC, 2).cache).toBe(CANONICAL);
  });

  it('info: the memory plan and the codec\'s bits per value', () => {
    const r = kvpack('info', '--model', STORIES_BIN, '--threads', '1', '--ctx', '256', '--cache', SPEC);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`256 tokens of ${CANONICAL}`);
    expect(r.stdout).toMatch(new RegExp(`cache +${CANONICAL.replace(/[()+.]/g, '\\$&')}: [\\d.]+ bits per value`));
  });

  it('trace: records the cache', () => {
    const out = path.join(tmp, 'trace.jsonl');
    const r = kvpack('trace', '--model', STORIES_BIN, '--threads', '1', '--cache', SPEC, '--prompt', PROMPT, '--max-tokens', '4', '--out', out);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readFileSync(out, 'utf8')).toContain(CANONICAL);
  });

  it('sweep: runs the row', () => {
    const plan = path.join(tmp, 'plan.json');
    const store = path.join(tmp, 'rows.jsonl');
    fs.writeFileSync(plan, JSON.stringify({ name: 'calib', store, models: [STORIES_BIN], caches: [SPEC], tasks: [{ task: 'ppl', data: 'stories260k', chunks: 1 }] }));
    const r = kvpack('sweep', plan, '--threads', '1');
    expect(r.status, r.stderr).toBe(0);
    const rows = fs.readFileSync(store, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { cache: string; metrics: { ppl: number } });
    expect(rows.map((row) => row.cache)).toEqual([CANONICAL]);
    expect(Number.isFinite(rows[0]!.metrics.ppl)).toBe(true);
  });

  it('serve --cache: starts with it, and a request that names no kv_cache runs with it', async () => {
    const { child: server, url } = await spawnServe(['--model', STORIES_BIN, '--threads', '1', '--cache', SPEC]);
    try {
      const response = await fetch(`${url}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'stories260K', prompt: PROMPT, max_tokens: 12, temperature: 0 }),
      });
      expect(response.status).toBe(200);
      const body = (await response.json()) as { choices: { text: string }[]; kv_cache: { spec: string } };
      expect(body.kv_cache.spec).toBe(CANONICAL);
      expect(body.choices[0]!.text).toBe(greedy);
    } finally {
      server.kill('SIGTERM');
    }
  });

  it('every committed calibration file loads for its model', async () => {
    const ref6m = await loadModel(REF6M_DIR, { threads: 1 });
    try {
      const dir = path.resolve('results/calibration');
      const files = fs.readdirSync(dir).filter((f) => f.endsWith('.calib'));
      expect(files.length).toBeGreaterThan(0);
      for (const f of files) {
        const m = f.startsWith('stories260K') ? model : ref6m;
        expect(readCalibration(path.join(dir, f), m.identity()).layers, f).toHaveLength(m.config.numLayers);
      }
    } finally {
      await ref6m.close();
    }
  });
});

describe('a corrupted calibration file is refused, not run', () => {
  /** The committed file with its layers swapped; signed again (as the format defines the hash) if `sign`. */
  function swapped(sign: boolean): string {
    const { sha256, ...body } = JSON.parse(fs.readFileSync(FILE, 'utf8')) as { sha256: string; layers: unknown[] };
    [body.layers[1], body.layers[2]] = [body.layers[2], body.layers[1]];
    const file = path.join(tmp, `swapped-${sign}.calib`);
    fs.writeFileSync(file, JSON.stringify({ ...body, sha256: sign ? createHash('sha256').update(JSON.stringify(body)).digest('hex') : sha256 }));
    return file;
  }

  it.each([
    [false, /was edited after kvpack calibrate wrote it/],
    [true, /layers\[1\]: says it is layer 2; layers are out of order/],
  ])('stories260K 2-bit ppl with swapped layers (signed again: %s) stops with an error naming the file', (sign, message) => {
    const file = swapped(sign);
    const r = kvpack('ppl', '--model', STORIES_BIN, '--threads', '1', '--data', 'stories260k', '--chunks', '2', '--cache', `kvquant(bits=2,calib=${file})`);
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(file);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });

  it('serve --cache with an edited file stops at start, naming the file', () => {
    const file = swapped(false);
    const r = spawnSync(process.execPath, [CLI, 'serve', '--model', STORIES_BIN, '--threads', '1', '--port', '0', '--cache', `kvquant(bits=2,calib=${file})`], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`kvpack serve: ${file}: was edited after kvpack calibrate wrote it`);
  });
});
