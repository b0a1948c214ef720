/**
 * `npm run fuzz [-- --seconds 120 --seed 1 --out docs/fuzz.md]`: throws random and corrupted input
 * at the spec grammar, the model loaders, the library and the command line, and counts what each
 * case came to. Accepted and a typed error (KvpackError, or a CLI exit 1/2 with one line) are fine;
 * anything else (another exception, exit 70, a signal, a stack trace, a hang) is a finding, printed
 * with the input that caused it. Time is split evenly between the areas.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { parseSpec, printSpec } from '../cache/registry.js';
import { KvpackError } from '../errors.js';
import { loadModel, type Model } from '../engine/model.js';
import { loadCheckpoint } from '../model/load.js';
import { seededRandom } from '../util/random.js';
import { serverArea } from './fuzz-server.js';

type Outcome = 'accepted' | 'typed error' | 'finding';
interface Area {
  name: string;
  /** Runs one case; returns its outcome and, for a finding, what went wrong. */
  run(random: () => number): Promise<{ outcome: Outcome; input: string; problem?: string }>;
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHARED = path.resolve(ROOT, '../shared/models');
const CLI = path.join(ROOT, 'dist/cli/main.js');
const STORIES = path.join(SHARED, 'stories260K/stories260K.bin');

const pick = <T>(random: () => number, list: readonly T[]): T => list[Math.floor(random() * list.length)]!;
const WEIRD_NUMBERS = [0, -1, 1, 0.5, 1.5, 1e-300, 1e308, 2 ** 32, 2 ** 53, Number.NaN, Infinity, -Infinity, 100000];
const WEIRD_WORDS = ['', ' ', '0', '-1', '1e308', 'NaN', '1.5', '4294967296', '__proto__', 'constructor', 'toString', '((', ')', '=', ',', '[1,2]', 'x'.repeat(300)];

/** What an exception means: a KvpackError is the typed refusal, anything else a finding. */
function judge(input: string, e: unknown): { outcome: Outcome; input: string; problem?: string } {
  if (e instanceof KvpackError) return { outcome: 'typed error', input };
  return { outcome: 'finding', input, problem: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
}

const SPEC_PARTS = ['full', 'window', 'h2o', 'scissorhands', 'tova', 'snapkv', 'random', 'knorm', 'qhitter', 'expected', 'kvzip', 'fp16', 'bf16', 'int', 'kvquant'];
const SPEC_KEYS = ['budget', 'recent', 'sinks', 'bits', 'group', 'axis', 'window', 'drop', 'mode', 'seed', 'schedule', 'heads', 'floor', 'every', 'outliers', '__proto__', 'constructor'];

function randomSpec(random: () => number): string {
  const value = () => (random() < 0.5 ? String(pick(random, WEIRD_NUMBERS)) : pick(random, WEIRD_WORDS));
  const part = () => {
    const args = Array.from({ length: Math.floor(random() * 3) }, () => `${pick(random, SPEC_KEYS)}=${value()}`);
    return random() < 0.3 ? pick(random, SPEC_PARTS) : `${pick(random, SPEC_PARTS)}(${args.join(',')})`;
  };
  const text = random() < 0.6 ? `${part()}+${part()}` : part();
  // and a byte-level mutation now and then
  if (random() < 0.2) {
    const at = Math.floor(random() * (text.length + 1));
    return text.slice(0, at) + pick(random, ['(', ')', '+', ',', '=', '[', ']', '']) + text.slice(at + 1);
  }
  return text;
}

const specGrammar: Area = {
  name: 'cache spec grammar',
  async run(random) {
    const text = randomSpec(random);
    try {
      const canonical = printSpec(parseSpec(text));
      if (printSpec(parseSpec(canonical)) !== canonical) return { outcome: 'finding', input: text, problem: `canonical form ${canonical} does not round-trip` };
      return { outcome: 'accepted', input: text };
    } catch (e) {
      return judge(text, e);
    }
  },
};

/** Model files whose bytes are flipped, truncated or overwritten with boundary values. */
function corruptModels(dir: string): Area {
  const sources = [path.join(SHARED, 'stories260K/stories260K.gguf'), path.join(SHARED, 'ref-6m/ref-6m.gguf')].filter((f) => fs.existsSync(f));
  return {
    name: 'corrupted model files',
    async run(random) {
      const source = pick(random, sources);
      const bytes = Buffer.from(fs.readFileSync(source));
      const headerEnd = Math.min(bytes.length, 64 * 1024); // headers are where corruption is interesting
      const kind = pick(random, ['flip', 'u32', 'u64', 'truncate']);
      const at = Math.floor(random() * headerEnd);
      let data = bytes;
      if (kind === 'flip') bytes[at] = bytes[at]! ^ (1 << Math.floor(random() * 8));
      else if (kind === 'u32' && at + 4 <= bytes.length) bytes.writeUInt32LE(pick(random, [0, 1, 0xffffffff, 0x7fffffff, 30, 8]), at);
      else if (kind === 'u64' && at + 8 <= bytes.length) bytes.writeBigUInt64LE(pick(random, [0n, 1n, 2n ** 63n, 2n ** 40n]), at);
      else data = bytes.subarray(0, Math.floor(random() * bytes.length));
      const file = path.join(dir, `corrupt${path.extname(source)}`);
      fs.writeFileSync(file, data);
      const input = `${path.basename(source)} ${kind} at byte ${at}`;
      try {
        await loadCheckpoint(file);
        return { outcome: 'accepted', input };
      } catch (e) {
        return judge(input, e);
      }
    },
  };
}

/** The library with odd options: every call must finish or throw a KvpackError. */
function libraryMisuse(model: Model): Area {
  const keys = ['maxTokens', 'temperature', 'topP', 'seed', 'stop', 'cache', 'chunkSize'];
  const odd = (random: () => number): unknown => (random() < 0.7 ? pick(random, WEIRD_NUMBERS) : pick(random, [null, [null], ['.'], 'x', {}, true]));
  return {
    name: 'library options and misuse',
    async run(random) {
      const options: Record<string, unknown> = { maxTokens: 4 };
      for (let i = 0; i < 2; i++) options[pick(random, keys)] = odd(random);
      const { cache, chunkSize, ...generate } = options;
      const input = JSON.stringify(options, (_, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
      try {
        const session = model.session({ ...(cache === undefined ? {} : { cache }), ...(chunkSize === undefined ? {} : { chunkSize }) } as never);
        try {
          if (typeof generate.maxTokens === 'number' && generate.maxTokens > 64) generate.maxTokens = 64; // bounded time, not a finding
          let text = '';
          for await (const piece of session.generate('Once upon a time', generate as never)) text += piece;
          if (random() < 0.3) await session.generate('more', { maxTokens: 2 }).next(); // use after use
        } finally {
          session.dispose();
        }
        return { outcome: 'accepted', input };
      } catch (e) {
        return judge(input, e);
      }
    },
  };
}

/** A CLI run: exit 0, or 1/2 with one line and no stack trace; never 70, a signal or a hang. */
function cliArguments(): Area {
  const commands: string[][] = [
    ['generate', '--model', STORIES, '--max-tokens', '4'],
    ['info', '--model', STORIES],
    ['eval', 'ppl', 'data=stories260k', 'ctx=32', 'chunks=1', '--model', STORIES],
  ];
  const options = ['--top-p', '--temperature', '--seed', '--threads', '--cache', '--max-tokens', '--ctx', '--chunks', '--stop'];
  return {
    name: 'command-line arguments',
    async run(random) {
      const args = [...pick(random, commands)];
      for (let i = 0; i < 2; i++) {
        const o = pick(random, options);
        args.splice(1, 0, o, random() < 0.5 ? pick(random, WEIRD_WORDS) : o === '--cache' ? randomSpec(random) : String(pick(random, WEIRD_NUMBERS)));
      }
      if (random() < 0.3 && args[0] === 'eval') args.push(`${pick(random, ['__proto__', 'constructor', 'ctx', 'limit'])}=${pick(random, WEIRD_WORDS)}`);
      if (args[0] === 'generate') args.push('Once');
      const input = `kvpack ${args.map((a) => JSON.stringify(a)).join(' ')}`;
      const r = await runCli(args, 30_000);
      if (r.code === 0) return { outcome: 'accepted', input };
      // progress bars and warnings (src/util/warn.ts) are not the error; the error is one line
      const oneLine = r.stderr.trim().split('\n').filter((l) => !/^\s*[\u2800-\u28ff▕▏█░ ]|\r|^kvpack: warning: /.test(l)).length <= 1;
      if ((r.code === 1 || r.code === 2) && oneLine && !/^\s+at /m.test(r.stderr)) return { outcome: 'typed error', input };
      return { outcome: 'finding', input, problem: r.code === null ? 'hang (killed after 30 s)' : `exit ${r.code}: ${r.stderr.slice(0, 300)}` };
    },
  };
}

function runCli(args: string[], timeoutMs: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'], timeout: timeoutMs });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stderr }));
  });
}

/** The same seed gives the same text, with one thread or several. */
function determinism(models: Model[]): Area {
  return {
    name: 'seeded determinism across thread counts',
    async run(random) {
      const seed = Math.floor(random() * 2 ** 32);
      const cache = pick(random, ['full', 'h2o(budget=16)', 'window(sinks=2,recent=14)+fp16']);
      const texts: string[] = [];
      for (const model of models) {
        const session = model.session({ cache });
        let text = '';
        for await (const piece of session.generate('Once upon a time', { maxTokens: 24, temperature: 1, topP: 0.9, seed })) text += piece;
        session.dispose();
        texts.push(text);
      }
      const input = `seed ${seed}, cache ${cache}`;
      return texts.every((t) => t === texts[0]) ? { outcome: 'accepted', input } : { outcome: 'finding', input, problem: 'texts differ across thread counts' };
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string', default: '1' }, out: { type: 'string' }, area: { type: 'string' } } });
  const seconds = Number(values.seconds);
  const seed = Number(values.seed);
  if (!(seconds > 0) || !Number.isInteger(seed)) throw new Error('usage: fuzz [--seconds N] [--seed S] [--out FILE] [--area WORD]');
  if (!fs.existsSync(CLI)) throw new Error(`build first (npm run build): ${CLI} is missing`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-fuzz-'));
  // the same cases are asked of both models; a second one with other thread counts checks determinism
  const single = await loadModel(STORIES, { threads: 1 });
  const multi = await loadModel(STORIES, { threads: Math.min(2, os.availableParallelism()) });
  const server = await serverArea(single, randomSpec);
  // --area WORD runs only the areas whose name holds WORD; each keeps its own seed either way
  const areas = [specGrammar, corruptModels(dir), libraryMisuse(single), cliArguments(), determinism([single, multi]), server]
    .map((area, i) => ({ area, seed: seed + i }))
    .filter(({ area }) => values.area === undefined || area.name.includes(values.area));
  if (areas.length === 0) throw new Error(`no area's name holds "${values.area}"`);
  const rows: string[] = [];
  const findings: string[] = [];
  try {
    for (const { area, seed: areaSeed } of areas) {
      const random = seededRandom(areaSeed);
      const counts: Record<Outcome, number> = { accepted: 0, 'typed error': 0, finding: 0 };
      const until = performance.now() + (seconds * 1000) / areas.length;
      while (performance.now() < until) {
        const r = await area.run(random);
        counts[r.outcome]++;
        if (r.outcome === 'finding' && findings.length < 50) findings.push(`- ${area.name}: \`${r.input}\` → ${r.problem}`);
      }
      const total = counts.accepted + counts['typed error'] + counts.finding;
      rows.push(`| ${area.name} | ${total} | ${counts.accepted} | ${counts['typed error']} | ${counts.finding} |`);
      process.stderr.write(`fuzz: ${area.name}: ${total} cases, ${counts.finding} findings\n`);
    }
  } finally {
    await server.close();
    await single.close();
    await multi.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const table = ['| area | cases | accepted | typed error | findings |', '|---|---:|---:|---:|---:|', ...rows].join('\n');
  const report = `${table}\n\n${findings.length ? `Findings:\n${findings.join('\n')}` : 'No findings.'}\n`;
  process.stdout.write(report);
  if (values.out) fs.writeFileSync(values.out, report);
  process.exitCode = findings.length ? 1 : 0;
}

await main();
