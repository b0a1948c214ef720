import { describe, expect, it } from 'vitest';
import { STORIES_BIN } from '../engine/helpers.js';
import { expectCleanFailure, kvpack } from './run.js';

const EVAL = ['eval', '--model', STORIES_BIN, '--threads', '1', '--json', '--limit', '1'];
const row = (r: ReturnType<typeof kvpack>) => {
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout.trim().split('\n')[0]!) as { params: Record<string, unknown>; metrics: { ppl: number } };
};

describe('eval: the data of a task', () => {
  it('--data D is data=D', () => {
    const word = row(kvpack(...EVAL, 'ppl', 'data=stories260k'));
    const option = row(kvpack(...EVAL, 'ppl', '--data', 'stories260k'));
    expect(option.params).toEqual(word.params);
    expect(option.params.data).toBe('stories260k');
    expect(option.metrics.ppl).toBe(word.metrics.ppl);
  });

  it('eval ppl and kvpack ppl default to wikitext2, as eval fidelity does', () => {
    const ppl = row(kvpack(...EVAL, 'ppl'));
    expect(ppl.params.data).toBe('wikitext2');
    expect(ppl.metrics.ppl).toBeGreaterThan(1);
    const cli = kvpack('ppl', '--model', STORIES_BIN, '--threads', '1', '--chunks', '1');
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(/^wikitext2: perplexity /);
  });

  it('says task parameters are key=value words when one is given as an option, and refuses --data where a task takes none', () => {
    expectCleanFailure(kvpack(...EVAL, 'ppl', '--ctx', '64'), 'task parameters are key=value words', 'ctx=… instead of --ctx', 'data=stories260k');
    expectCleanFailure(kvpack(...EVAL, 'passkey', '--data', 'c4'), '--data: task passkey takes no data');
    expectCleanFailure(kvpack(...EVAL, 'ppl', '--data', 'c4', 'data=pg19'), '--data c4 and data=pg19 disagree');
  });
});
