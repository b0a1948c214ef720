import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { STORIES_BIN } from '../engine/helpers.js';

const CLI = path.resolve('dist/cli/main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-calibrate-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const kvpack = (...args: string[]) => spawnSync(process.execPath, [CLI, 'calibrate', ...args], { encoding: 'utf8', timeout: 120_000 });
/** The CLI with its own calibration store. */
const inStore = (store: string, ...args: string[]) =>
  spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, KVPACK_CACHE_DIR: store } });

describe('kvpack calibrate', () => {
  it('writes a calibration file for stories260K from its calibration stories, with progress on stderr', () => {
    const out = path.join(tmp, 'stories.calib');
    const r = kvpack('--model', STORIES_BIN, '--samples', '2', '--ctx', '64', '--bits', '3', '--out', out);
    expect(r.stderr).toMatch(/calibrate stories260K: 4 seq in/);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('from 126 tokens of stories260k-calibration');
    const file = JSON.parse(fs.readFileSync(out, 'utf8')) as { version: number; bits: number[]; layers: unknown[]; model: { name: string } };
    expect(file).toMatchObject({ version: 2, bits: [3], model: { name: 'stories260K' } });
    expect(file.layers).toHaveLength(5);
    expect(fs.existsSync(`${out}.partial`)).toBe(false);
  });

  it('without --out saves into the per-model store, which kvquant without calib= then uses and names', () => {
    const store = path.join(tmp, 'store');
    const made = inStore(store, 'calibrate', '--model', STORIES_BIN, '--samples', '2', '--ctx', '64', '--bits', '3');
    expect(made.status, made.stderr).toBe(0);
    const [file] = fs.readdirSync(path.join(store, 'calibration'));
    const saved = path.join(store, 'calibration', file!);
    const weights = (JSON.parse(fs.readFileSync(saved, 'utf8')) as { model: { weights: string } }).model.weights;
    expect(file).toBe(`${weights}.calib`); // named by the model's weights, so every copy of the model finds it
    expect(made.stdout).toContain(`${saved}: `);
    expect(made.stdout).toContain('kvquant without calib= uses it for this model');

    const generate = (dir: string, cache: string) =>
      inStore(dir, 'generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '12', '--cache', cache, 'Once upon a time');
    const found = generate(store, 'kvquant(bits=3)');
    expect(found.status, found.stderr).toBe(0);
    expect(found.stderr).toContain(`kvquant: using calibration ${saved} (made by kvpack calibrate)`);
    const named = generate(path.join(tmp, 'empty'), `kvquant(bits=3,calib=${saved})`);
    const bytes = (stderr: string) => /^KV cache: .*$/m.exec(stderr)![0];
    expect(found.stdout).toBe(named.stdout); // as if named
    expect(bytes(found.stderr)).toBe(bytes(named.stderr));
    const online = generate(path.join(tmp, 'empty'), 'kvquant(bits=3)');
    expect(bytes(online.stderr)).not.toBe(bytes(found.stderr)); // staged as f16 rows, not quantized from the first token
    // 17 tokens, fewer than the 64 it calibrates on: all f16 rows, larger than fp16, and said so
    expect(online.stderr).toMatch(/x larger\)/);
    expect(online.stderr).toContain('kvquant: no calibration file, so each layer keeps its first 64 tokens as f16 rows');
    expect(online.stderr).toContain('this sequence has not reached them yet');
    expect(found.stderr).not.toContain('no calibration file');
    // a width the file does not hold, or other outliers than it was made with: calibrated online, and said so
    for (const spec of ['kvquant(bits=2)', 'kvquant(bits=3,outliers=0)']) {
      const r = generate(store, spec);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toContain('kvquant: no calibration file');
    }
  });

  it.each([
    [['--model', STORIES_BIN, '--data', 'wikitext2', '--out', 'x'], 'unknown calibration data "wikitext2"'],
    [['--model', STORIES_BIN, '--bits', '5', '--out', 'x'], '--bits takes a list of 2, 3 and 4'],
  ])('refuses %j with a clear message', (args, message) => {
    const r = kvpack(...args);
    expect(r.status).toBe(2); // usage errors exit 2 (README: exit codes)
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});
