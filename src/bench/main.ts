#!/usr/bin/env node
/**
 * `npm run bench`: speed of kvpack against llama.cpp (node-llama-cpp) on the same models. Markdown
 * tables go to stdout (or JSON with --json), progress and logs to stderr. The report is a list of
 * sections; to add one, write a Section (see speed.ts) and list it in SECTIONS.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { kernelBuild, type SimdBuild } from '../kernels/index.js';
import { batchSection } from './batch.js';
import { BenchContext, type BenchOptions, type Section, type SectionResult } from './section.js';
import { defaultCacheDir, MODEL_SPECS } from './models.js';
import { kernelsSection } from './kernels.js';
import { kvcacheSection } from './kvcache.js';
import { samplingSection } from './sampling.js';
import { speedSection } from './speed.js';
import { contextScalingSection } from './context-scaling.js';
import { scaleSections } from './scale.js';
import { streamingSection } from './streaming.js';
import { renderMarkdown } from './table.js';

const SECTIONS: Section[] = [speedSection, contextScalingSection, kernelsSection, kvcacheSection, streamingSection, batchSection, samplingSection, ...scaleSections];

const USAGE = `usage: npm run bench -- [options]

  --quick              fewer tokens and one run per number (a smoke run)
  --only LIST          models, comma-separated: 1b (the Llama-3.2-1B shape in f16, Q8_0, Q6_K, Q4_K_M, Q4_0), 135m (f32 and f16), 135m-quant (Q8_0 and Q4_K_M) or ${MODEL_SPECS.map((m) => m.id).join(', ')}
  --threads LIST       thread counts, e.g. 1,2 (default 1,2)
  --runs N             timed runs per number after a warm-up; the median is reported (default 3, --quick 1)
  --chunks LIST        kvpack prefill chunk sizes to try (default 64,128,256,512)
  --decode-tokens N    speed: tokens decoded (after a prompt as long) per run (default 64, --quick 16)
  --prefill-tokens N   speed: prompt tokens prefilled per run (default 512, --quick 128)
  --kvpack-format F    gguf (the file llama.cpp runs, default) or hf (same weights as safetensors)
  --cache SPEC         kvpack cache spec (default full+fp16, like llama.cpp's f16 cache)
  --flash-attn MODE    llama.cpp flash attention: auto (default), on, off
  --section LIST       sections to run (default: those not marked opt-in; scale = scale-7b and scale-1m):
${SECTIONS.map((s) => `                         ${s.id}: ${s.describe}`).join('\n')}
  --cache-dir DIR      where random models are written (default .kvpack-cache/bench)
  --json               print JSON instead of Markdown
`;

function intList(flag: string, v: string): number[] {
  const out = v.split(',').map((x) => Number(x.trim()));
  if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${flag} takes positive integers separated by commas, got "${v}"`);
  return out;
}

function parseOptions(argv: string[]): BenchOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      threads: { type: 'string', default: '1,2' },
      runs: { type: 'string' },
      chunks: { type: 'string', default: '64,128,256,512' },
      'kvpack-format': { type: 'string', default: 'gguf' },
      cache: { type: 'string', default: 'full+fp16' },
      'flash-attn': { type: 'string', default: 'auto' },
      section: { type: 'string' },
      'decode-tokens': { type: 'string' },
      'prefill-tokens': { type: 'string' },
      'cache-dir': { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return undefined;
  }
  const only = values.only?.split(',').map((s) => s.trim());
  const known = new Set(MODEL_SPECS.flatMap((m) => m.groups));
  for (const o of only ?? []) if (!known.has(o)) throw new Error(`--only: unknown model "${o}" (known: ${[...known].join(', ')})`);
  const sections = values.section?.split(',').map((s) => s.trim());
  for (const s of sections ?? []) if (!SECTIONS.some((x) => selects(s, x))) throw new Error(`--section: unknown section "${s}"`);
  const format = values['kvpack-format'];
  if (format !== 'gguf' && format !== 'hf') throw new Error(`--kvpack-format is gguf or hf, got "${format}"`);
  const fa = values['flash-attn'];
  if (fa !== 'auto' && fa !== 'on' && fa !== 'off') throw new Error(`--flash-attn is auto, on or off, got "${fa}"`);
  return {
    quick: values.quick,
    only,
    threads: intList('--threads', values.threads),
    json: values.json,
    cacheDir: values['cache-dir'] ?? defaultCacheDir(),
    runs: values.runs ? intList('--runs', values.runs)[0]! : values.quick ? 1 : 3,
    chunkSizes: intList('--chunks', values.chunks),
    decodeTokens: values['decode-tokens'] ? intList('--decode-tokens', values['decode-tokens'])[0]! : undefined,
    prefillTokens: values['prefill-tokens'] ? intList('--prefill-tokens', values['prefill-tokens'])[0]! : undefined,
    kvpackFormat: format,
    cache: values.cache,
    flashAttention: fa === 'auto' ? 'auto' : fa === 'on',
    sections,
  };
}

function environment(simd: SimdBuild, llamaCppRelease: string | undefined): Record<string, string> {
  let nlcVersion = '?';
  try {
    // The package does not export its package.json; it sits two levels above the entry point.
    const entry = fileURLToPath(import.meta.resolve('node-llama-cpp'));
    nlcVersion = (JSON.parse(fs.readFileSync(path.join(path.dirname(entry), '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    // Only informative.
  }
  return {
    date: new Date().toISOString(),
    cpu: `${os.cpus()[0]?.model ?? '?'} × ${os.availableParallelism()}`,
    node: process.version,
    'node-llama-cpp': nlcVersion,
    'llama.cpp release (as node-llama-cpp reports it)': llamaCppRelease ?? '?',
    'kvpack kernels': `${simd === 'relaxed' ? 'relaxed SIMD' : 'SIMD128'} build (KVPACK_SIMD=simd128|relaxed picks one)`,
    // Other processes on the machine skew every number; the 1-minute load average at the start says how busy it was.
    'load average (1 min) at start': os.loadavg()[0]!.toFixed(2),
  };
}

async function main(): Promise<void> {
  let options: BenchOptions | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (!options) return;
  const ctx = new BenchContext(options);
  const results: { id: string; result: SectionResult }[] = [];
  try {
    const release = (await ctx.llama()).version;
    const env = environment(await kernelBuild(), release);
    if (!options.json) {
      process.stdout.write(`## kvpack bench${options.quick ? ' (quick: smoke-run sizes, not numbers to quote)' : ''}\n\n`);
      process.stdout.write(Object.entries(env).map(([k, v]) => `- ${k}: ${v}`).join('\n') + '\n\n');
    }
    for (const section of SECTIONS) {
      if (options.sections ? !options.sections.some((s) => selects(s, section)) : section.defaultOn === false) continue;
      ctx.log(`== ${section.id}: ${section.describe}`);
      const result = await section.run(ctx);
      results.push({ id: section.id, result });
      if (!options.json) for (const t of result.tables) process.stdout.write(renderMarkdown(t) + '\n');
    }
    env['load average (1 min) at end'] = os.loadavg()[0]!.toFixed(2);
    if (options.json) process.stdout.write(JSON.stringify({ environment: env, options, sections: results }, null, 2) + '\n');
    else process.stdout.write(`- load average (1 min) at end: ${env['load average (1 min) at end']}\n`);
  } finally {
    await ctx.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});

/** `--section scale` selects scale-7b and scale-1m; any other name selects the section of that id. */
function selects(name: string, section: Section): boolean {
  return section.id === name || section.id.startsWith(`${name}-`);
}
