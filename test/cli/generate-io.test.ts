import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { STORIES_BIN } from '../engine/helpers.js';
import { CLI, expectCleanFailure, kvpack } from './run.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-generate-io-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** kvpack with `input` on its stdin. */
function kvpackWithInput(input: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000, input });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const GREEDY = ['generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '20'];

describe('generate: the prompt from a file or stdin', () => {
  const expected = kvpack(...GREEDY, 'Once upon a time');

  it('- reads the prompt from stdin (one trailing newline dropped), as the same prompt on the command line', () => {
    expect(expected.code, expected.stderr).toBe(0);
    const r = kvpackWithInput('Once upon a time\n', ...GREEDY, '-');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(expected.stdout);
    expect(r.stdout.startsWith('-')).toBe(false);
  });

  it('-f FILE and --file FILE read it from a file; -f - reads stdin', () => {
    const file = path.join(tmp, 'prompt.txt');
    fs.writeFileSync(file, 'Once upon a time\n');
    expect(kvpack(...GREEDY, '-f', file).stdout).toBe(expected.stdout);
    expect(kvpack(...GREEDY, '--file', file).stdout).toBe(expected.stdout);
    expect(kvpackWithInput('Once upon a time', ...GREEDY, '-f', '-').stdout).toBe(expected.stdout);
    // only one newline is the file's end: a prompt that ends a paragraph keeps the rest
    fs.writeFileSync(file, 'Once upon a time\n\n');
    expect(kvpack(...GREEDY, '-f', file).stdout.startsWith('Once upon a time\n')).toBe(true);
  });

  it('refuses a missing file, an empty one, and a prompt given twice, naming the problem', () => {
    const missing = kvpack(...GREEDY, '-f', path.join(tmp, 'missing.txt'));
    expectCleanFailure(missing, 'cannot read the prompt from', 'missing.txt');
    expect(missing.code).toBe(1);
    const empty = path.join(tmp, 'empty.txt');
    fs.writeFileSync(empty, '\n');
    expectCleanFailure(kvpack(...GREEDY, '-f', empty), 'needs a prompt', 'empty.txt holds none');
    expectCleanFailure(kvpackWithInput('', ...GREEDY, '-'), 'stdin holds none');
    expectCleanFailure(kvpack(...GREEDY, '-f', empty, 'Once'), 'not both');
  });
});

describe('generate: speed after a run', () => {
  it('prints prompt and generation tokens per second, as llama-cli does, with counts that are the run\'s', () => {
    const r = kvpack(...GREEDY, 'Once upon a time');
    expect(r.code, r.stderr).toBe(0);
    const m = /^speed: prompt (\d+) tokens in ([\d.]+) ms \(([\d.]+) tokens\/s\); generation (\d+) tokens in ([\d.]+) ms \(([\d.]+) tokens\/s\)$/m.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const [promptTokens, promptMs, promptRate, tokens, ms, rate] = m!.slice(1).map(Number) as [number, number, number, number, number, number];
    expect(promptTokens).toBe(5); // BOS + "Once upon a time" in stories260K's tokenizer
    expect(tokens).toBe(20); // --max-tokens 20, and this story does not end within them
    // each rate is its count over its time, up to the rounding of the printed milliseconds (0.05 ms)
    const consistent = (n: number, t: number, perSecond: number) => {
      expect(perSecond).toBeGreaterThanOrEqual(n / ((t + 0.05) / 1000) - 0.05);
      expect(perSecond).toBeLessThanOrEqual(t > 0.05 ? n / ((t - 0.05) / 1000) + 0.05 : Infinity);
    };
    consistent(promptTokens, promptMs, promptRate);
    consistent(tokens, ms, rate);
  });
});

describe('generate: a --max-kv-bytes stop', () => {
  it('ends the streamed text with a newline, so its error starts a line of its own', () => {
    // stories260K holds 640 bytes per token in fp16: 10 KiB is 16 tokens, reached mid-generation
    const r = kvpack('generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '100', '--max-kv-bytes', '10KiB', 'Once upon a time');
    expectCleanFailure(r, 'past maxKvBytes 10.0 KiB');
    expect(r.stdout.length).toBeGreaterThan('Once upon a time'.length); // it stopped mid-text
    expect(r.stdout.endsWith('\n')).toBe(true);
  });
});

describe('generate: llama-cli samplers', () => {
  it('--top-k 1 and --min-p 1 keep the most likely token alone: greedy text at any temperature', () => {
    const greedy = kvpack(...GREEDY, 'Once upon a time');
    const sampled = ['generate', '--model', STORIES_BIN, '--max-tokens', '20', '--temperature', '1.5'];
    expect(kvpack(...sampled, '--top-k', '1', 'Once upon a time').stdout).toBe(greedy.stdout);
    expect(kvpack(...sampled, '--min-p', '1', 'Once upon a time').stdout).toBe(greedy.stdout);
    expect(kvpack(...sampled, '--top-k', '0', '--top-p', '1', '--min-p', '0', 'Once upon a time').stdout).not.toBe(greedy.stdout);
  });

  it('the penalties steer greedy text away from tokens it has used; bad values are refused by name', () => {
    const long = ['generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '40'];
    const greedy = kvpack(...long, 'Once upon a time');
    const penalized = kvpack(...long, '--repeat-penalty', '2', 'Once upon a time');
    expect(penalized.code, penalized.stderr).toBe(0);
    expect(penalized.stdout).not.toBe(greedy.stdout);
    expectCleanFailure(kvpack(...GREEDY, '--repeat-penalty', '0', 'Once'), '--repeat-penalty must be a number > 0');
    expectCleanFailure(kvpack(...GREEDY, '--presence-penalty', '3', 'Once'), '--presence-penalty must be a number in [-2, 2]');
    expectCleanFailure(kvpack(...GREEDY, '--top-k=-1', 'Once'), '--top-k must be an integer ≥ 0');
    expectCleanFailure(kvpack(...GREEDY, '--min-p', '1.5', 'Once'), '--min-p must be a number in [0, 1]');
    expectCleanFailure(kvpack(...GREEDY, '--repeat-last-n=-2', 'Once'), '--repeat-last-n must be an integer ≥ -1');
  });
});
