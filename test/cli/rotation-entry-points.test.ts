// The Hadamard-rotated int codec and turboquant from every entry point: the same spec text, the same
// meaning (the library's greedy text and perplexity are what the commands print).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../src/engine/model.js';
import { STORIES_BIN } from '../engine/helpers.js';
import { startServer } from '../server/helpers.js';
import { expectCleanFailure, expectPplEqualsEvalPpl, kvpack, libraryGreedy } from './run.js';

const SPECS = ['int(bits=4,rotate=hadamard)', 'turboquant(kbits=3,vbits=4,boundary=1)'];
const PROMPT = 'Once upon a time';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-rotation-entry-'));

let model: Model;
let greedy: Map<string, string>;
beforeAll(async () => {
  model = await loadModel(STORIES_BIN, { threads: 1, context: 512 });
  greedy = await libraryGreedy(model, SPECS, PROMPT, 12);
});
afterAll(async () => {
  await model?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe.each(SPECS)('%s from every entry point', (spec) => {
  const canonical = `full+${spec}`;

  it('the library: a session runs it, and it differs from the fp16 cache', () => {
    const session = model.session({ cache: spec });
    expect(session.cache.spec).toBe(canonical);
    const ids = model.tokenizer.encode(PROMPT);
    const logits = session.feed(ids).slice();
    expect(logits.every(Number.isFinite)).toBe(true);
    expect(logits).not.toEqual(model.session({ cache: 'full' }).feed(ids).slice());
  });

  it('generate: the same greedy text as the library', () => {
    const r = kvpack('generate', '--model', STORIES_BIN, '--threads', '1', '--greedy', '--max-tokens', '12', '--cache', spec, PROMPT);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${PROMPT}${greedy.get(spec)}\n`);
  });

  it('ppl and eval ppl: the same perplexity; eval fidelity and info run it', () => {
    expect(expectPplEqualsEvalPpl(STORIES_BIN, spec, 1).cache).toBe(canonical);
    const fidelity = kvpack('eval', 'fidelity', 'data=stories260k', 'ctx=128', '--limit', '1', '--model', STORIES_BIN, '--threads', '1', '--cache', spec, '--json');
    expect(fidelity.code, fidelity.stderr).toBe(0);
    const f = JSON.parse(fidelity.stdout.trim().split('\n').at(-1)!) as { cache: string; metrics: { kl: number } };
    expect(f.cache).toBe(canonical);
    expect(f.metrics.kl).toBeGreaterThan(0);
    const info = kvpack('info', '--model', STORIES_BIN, '--threads', '1', '--ctx', '256', '--cache', spec);
    expect(info.code, info.stderr).toBe(0);
    expect(info.stdout).toContain(`256 tokens of ${canonical}`);
  });

  it('trace: records the cache step by step', () => {
    const out = path.join(tmp, `trace-${spec.slice(0, 3)}.jsonl`);
    const r = kvpack('trace', '--model', STORIES_BIN, '--threads', '1', '--cache', spec, '--prompt', PROMPT, '--max-tokens', '4', '--out', out);
    expect(r.code, r.stderr).toBe(0);
    const text = fs.readFileSync(out, 'utf8');
    expect(text).toContain(canonical);
    expect(text.match(/"type":"step"/g)?.length).toBeGreaterThan(1);
  });

  it('serve: a request naming it as kv_cache gets the library\'s greedy text', async () => {
    const server = await startServer(STORIES_BIN);
    try {
      const response = await fetch(`${server.url}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'stories260K', prompt: PROMPT, max_tokens: 12, temperature: 0, kv_cache: spec }),
      });
      expect(response.status).toBe(200);
      const body = (await response.json()) as { choices: { text: string }[]; kv_cache: { spec: string } };
      expect(body.kv_cache.spec).toBe(canonical);
      expect(body.choices[0]!.text).toBe(greedy.get(spec));
    } finally {
      await server.close();
    }
  });
});

describe('refusals from the command line', () => {
  it('a rotation of pre-RoPE keys is a usage error that says why', () => {
    const r = kvpack('generate', '--model', STORIES_BIN, '--threads', '1', '--max-tokens', '2', '--cache', 'kvquant(rotate=hadamard)', PROMPT);
    expectCleanFailure(r, 'RoPE does not commute with the rotation');
    expect(r.code).toBe(2);
  });
});
