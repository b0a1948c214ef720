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

  it.each([
    [['--model', STORIES_BIN], 'calibrate needs --out FILE'],
    [['--model', STORIES_BIN, '--data', 'wikitext2', '--out', 'x'], 'unknown calibration data "wikitext2"'],
    [['--model', STORIES_BIN, '--bits', '5', '--out', 'x'], '--bits takes a list of 2, 3 and 4'],
  ])('refuses %j with a clear message', (args, message) => {
    const r = kvpack(...args);
    expect(r.status).toBe(2); // usage errors exit 2 (README: exit codes)
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});
