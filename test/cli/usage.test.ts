import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OPTIONS as CACHES } from '../../src/cli/caches.js';
import { OPTIONS as CHAT } from '../../src/cli/chat.js';
import { OPTIONS as EVAL } from '../../src/cli/eval.js';
import { OPTIONS as GENERATE } from '../../src/cli/generate.js';
import { OPTIONS as INFO } from '../../src/cli/info.js';
import { OPTIONS as PPL } from '../../src/cli/ppl.js';
import { OPTIONS as REPORT } from '../../src/cli/report.js';
import { OPTIONS as SWEEP } from '../../src/cli/sweep.js';
import { OPTIONS as WORKER } from '../../src/cli/worker.js';
import { STORIES_BIN } from '../engine/helpers.js';

// The built CLI, as a user runs it (npm test builds first).
const CLI = path.resolve('dist/cli/main.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-usage-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function kvpack(args: string[], cwd?: string) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, cwd });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('what a newcomer meets on the command line', () => {
  it.each([
    ['generate', GENERATE],
    ['ppl', PPL],
    ['info', INFO],
    ['eval', EVAL],
    ['sweep', SWEEP],
    ['worker', WORKER],
    ['report', REPORT],
    ['caches', CACHES],
    ['chat', CHAT],
  ] as const)('kvpack %s --help lists every option the command takes', (command, options) => {
    const r = kvpack([command, '--help']);
    expect(r.code).toBe(0);
    for (const name of Object.keys(options)) expect(r.stdout, `--${name}`).toContain(`--${name}`);
  });

  it('serve reads byte counts as generate and ppl do (512MiB, 2G), and refuses a bad one with the same words', async () => {
    const bad = [['generate', 'x'], ['ppl', '--data', 'stories260k'], ['serve']].map(([command, ...rest]) => kvpack([command!, '--model', STORIES_BIN, '--max-kv-bytes', '12X', ...rest]));
    for (const r of bad) {
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('--max-kv-bytes must be a positive byte count such as 512MiB or 2GiB, got "12X"');
    }
    const server = spawn(process.execPath, [CLI, 'serve', '--model', STORIES_BIN, '--threads', '1', '--port', '0', '--max-kv-bytes', '512MiB', '--max-body', '2k'], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const started = await new Promise<string>((resolve, reject) => {
        let stderr = '';
        server.stderr.on('data', (d: Buffer) => {
          stderr += d.toString();
          if (stderr.includes(' on http')) resolve(stderr);
        });
        server.on('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
      });
      expect(started).toContain(`KV budget ${512 * 2 ** 20} bytes`);
    } finally {
      server.kill('SIGTERM');
    }
  });

  it('ppl --help names every data set, stories260k included', () => {
    expect(kvpack(['ppl', '--help']).stdout).toContain('stories260k');
  });

  it('usage errors exit 2 with the command named once; other failures exit 1', () => {
    const bad = kvpack(['generate', '--bogus', 'x']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^kvpack generate: Unknown option '--bogus'/);
    expect(bad.stderr).not.toContain('generate: generate:');
    expect(kvpack(['nope']).code).toBe(2);
    expect(kvpack([]).code).toBe(2);
    expect(kvpack(['generate', '--model', STORIES_BIN, '--cache', 'h2o(budget=1.0)', 'Once']).code).toBe(2);
    const cut = path.join(tmp, 'cut.gguf');
    fs.writeFileSync(cut, fs.readFileSync(STORIES_BIN.replace(/\.bin$/, '.gguf')).subarray(0, 100));
    const broken = kvpack(['info', '--model', cut]);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toContain('cut.gguf');
  });

  it('refuses an empty prompt or none at all', () => {
    for (const args of [['generate', '--model', STORIES_BIN], ['generate', '--model', STORIES_BIN, '  ']]) {
      const r = kvpack(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('generate needs a prompt');
      expect(r.stdout).toBe('');
    }
  });

  it('does not echo a prompt that is too long before the error, and suggests what fits the model', () => {
    const prompt = 'Once upon a time '.repeat(200);
    const r = kvpack(['generate', '--model', STORIES_BIN, '--max-tokens', '4', prompt]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("exceed the model's context of 512");
    expect(r.stderr).toContain('recent=508');
    expect(r.stderr).not.toContain('recent=1020');
  });

  it('ppl and eval take the model\'s context when ctx is not given, and say so', () => {
    const r = kvpack(['ppl', '--model', STORIES_BIN, '--data', 'stories260k', '--chunks', '1', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { ctx: number }).ctx).toBeLessThanOrEqual(512);
    const tooLong = kvpack(['ppl', '--model', STORIES_BIN, '--data', 'stories260k', '--ctx', '2048', '--chunks', '1']);
    expect(tooLong.code).toBe(2);
    expect(tooLong.stderr).toContain('--ctx 512 or less');
    const e = kvpack(['eval', 'fidelity', 'data=stories260k', '--limit', '1', '--model', STORIES_BIN]);
    expect(e.code, e.stderr).toBe(0);
    expect(e.stdout).toMatch(/ctx=\d+/);
    expect(e.stdout).not.toContain('ctx=2048');
  });

  it('a folder with a checkpoint but no config.json gets a hint naming the file', () => {
    const dir = path.join(tmp, 'llama2c');
    fs.mkdirSync(dir);
    fs.copyFileSync(STORIES_BIN, path.join(dir, 'stories260K.bin'));
    const r = kvpack(['info', '--model', dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no config.json');
    expect(r.stderr).toContain(`--model ${path.join(dir, 'stories260K.bin')}`);
  });

  it('a sweep plan reads its paths from its own folder and writes its own store, from any directory', () => {
    const dir = path.join(tmp, 'plan');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'story.txt'), 'Once upon a time there was a little girl. '.repeat(40));
    fs.writeFileSync(path.join(dir, 'tiny.json'), JSON.stringify({
      models: [path.relative(dir, STORIES_BIN)],
      caches: ['full'],
      tasks: [{ task: 'ppl', data: 'story.txt', ctx: 64, chunks: 1 }],
    }));
    const r = kvpack(['sweep', path.join(dir, 'tiny.json')], os.tmpdir());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^sweep tiny: appending to \S*tiny\.jsonl/m);
    expect(fs.readFileSync(path.join(dir, 'tiny.jsonl'), 'utf8').split('\n').filter(Boolean)).toHaveLength(1);
  });
});
