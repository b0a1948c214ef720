import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadModel } from '../../src/engine/model.js';
import { REF6M_DIR, STORIES_BIN } from '../engine/helpers.js';
import { CLI, expectCleanFailure } from './run.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-chat-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function chat(input: string, ...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, 'chat', '--threads', '1', '--greedy', '--max-tokens', '8', ...args], { encoding: 'utf8', timeout: 60_000, input });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Each turn's line on stderr: tokens held, bytes held, and the speed line's prompt and generated tokens. */
function turns(stderr: string) {
  const re = /^\[turn (\d+), (\d+) tokens\] KV cache: ([\d.]+) (B|KiB) held \(full fp16: [^)]*\)\nspeed: prompt (\d+) tokens? in [^;]*; generation (\d+) tokens?/gm;
  return [...stderr.matchAll(re)].map((m) => ({
    turn: Number(m[1]), tokens: Number(m[2]), bytes: Number(m[3]) * (m[4] === 'KiB' ? 1024 : 1), prompt: Number(m[5]), generated: Number(m[6]),
  }));
}

// ref-6m with a chat template of its own (ChatML-like markers spelled in plain text)
const TEMPLATE = '{% for m in messages %}<<{{ m.role }}>> {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<<assistant>>{% endif %}';
const withTemplate = path.join(tmp, 'ref-6m-chat');
fs.mkdirSync(withTemplate);
for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) fs.symlinkSync(path.join(REF6M_DIR, f), path.join(withTemplate, f));
fs.writeFileSync(path.join(withTemplate, 'tokenizer_config.json'), JSON.stringify({ chat_template: TEMPLATE }));

describe('kvpack chat', () => {
  it("keeps the conversation in one session through the model's template: each turn feeds only what the template adds", async () => {
    const r = chat('The history of the town\nAnd then the president said\n', '--model', withTemplate, '--system', 'You are brief.');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`chat template: ${path.join(withTemplate, 'tokenizer_config.json')}`);
    const [one, two] = turns(r.stderr);
    expect(two, r.stderr).toBeDefined();
    // the whole history is held: turn 2 adds its own prompt and reply to turn 1's tokens
    expect(one!.tokens).toBe(one!.prompt + one!.generated);
    expect(two!.tokens).toBe(one!.tokens + two!.prompt + two!.generated);
    // turn 1 fed the template's render; turn 2 only what the template adds after turn 1's reply
    const model = await loadModel(withTemplate, { threads: 1 });
    try {
      const encode = (text: string) => model.tokenizer.encode(text, { addBos: false });
      expect(one!.prompt).toBe(model.tokenizer.encode('<<system>> You are brief.\n<<user>> The history of the town\n<<assistant>>').length);
      expect(two!.prompt).toBe(encode('\n<<user>> And then the president said\n<<assistant>>').length);
    } finally {
      await model.close();
    }
    // the bytes grow with the history
    expect(two!.bytes).toBeGreaterThan(one!.bytes);
    expect(r.stdout.split('\n').filter((l) => l !== '').length).toBeGreaterThanOrEqual(1);
  });

  it('shows the cache of a compressed spec against fp16 after each turn, and stops at /exit', () => {
    const r = chat('Once upon a time\nThe cat sat\n/exit\nnever read\n', '--model', STORIES_BIN, '--cache', 'window(sinks=2,recent=12)');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('chat template: default');
    const t = turns(r.stderr);
    expect(t.map((x) => x.turn)).toEqual([1, 2]);
    expect(r.stderr).toMatch(/^\[turn 2, \d+ tokens\] KV cache: .* held \(full fp16: .*, [\d.]+x smaller\)$/m);
  });

  it('refuses positional arguments and an empty --system, naming the problem', () => {
    expectCleanFailure(chat('', '--model', STORIES_BIN, 'hello'), 'chat takes no positional arguments');
    expectCleanFailure(chat('', '--model', STORIES_BIN, '--system', ' '), '--system needs a message');
  });
});
