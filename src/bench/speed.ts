import os from 'node:os';
import path from 'node:path';
import type { LlamaModel } from 'node-llama-cpp';
import { Progress } from '../util/progress.js';
import type { BenchContext, Section, SectionResult } from './section.js';
import { KvpackEngine, LlamaCppEngine, type Engine } from './engines.js';
import type { BenchModel } from './models.js';
import { readBandwidth, rooflineShare } from './bandwidth.js';
import { kvBytesPerToken } from '../model/config.js';
import { formatNumber, formatRatio, formatShare, median, ratioCell, type Cell, type Table } from './table.js';

/** Token counts of one speed run. */
interface Sizes {
  decodePrompt: number;
  decodeTokens: number;
  prefillTokens: number;
}

interface Measured {
  /** Tokens per second (from the median time). */
  tokPerS: number;
  /** Each measured run, ms. */
  runsMs: number[];
}

interface SpeedRow {
  model: string;
  threads: number;
  kvpackFile: string;
  llamaFile: string;
  kvpackFormat: string | null;
  kvpackDecode: Measured | null;
  llamaDecode: Measured | null;
  kvpackPrefill: Measured | null;
  kvpackChunk: number | null;
  /** Every chunk size tried: chunk → tok/s. */
  kvpackPrefillByChunk: Record<number, Measured>;
  llamaPrefill: Measured | null;
  llamaFlashAttention: boolean | 'auto' | null;
  /** Bytes one decode step must read (weights + KV held at the end of the decode), per engine. */
  kvpackStepBytes: number | null;
  llamaStepBytes: number | null;
  /** Read bandwidth of the streaming-read kernel at this thread count, bytes/s. */
  bandwidth: number;
  /** 1-minute load average when the row started and ended: other processes skew every number. */
  load: [number, number];
  errors: string[];
}

/** Deterministic ids from [first, vocab): the same prompt for both engines on every run. */
export function promptTokens(count: number, first: number, vocab: number, seed = 42): number[] {
  let s = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(first + (s % (vocab - first)));
  }
  return out;
}

/** A measurement: how many tokens one run processes, and the run itself (returns ms). */
interface Job {
  key: string;
  tokens: number;
  run: () => Promise<number>;
}

/**
 * One warm-up run of every job, then `runs` rounds that each run every job once. Interleaving the
 * engines round by round means a burst of load from another process slows both, not just one, so
 * the ratios hold up better than the absolute numbers on a shared machine. A job that throws is
 * dropped (its error recorded) and the others go on.
 */
async function measureInterleaved(jobs: Job[], runs: number, progress: Progress, errors: string[]): Promise<Map<string, Measured>> {
  const times = new Map<string, number[]>();
  let live = [...jobs];
  const attempt = async (job: Job, record: boolean): Promise<void> => {
    try {
      const ms = await job.run();
      if (record) times.set(job.key, [...(times.get(job.key) ?? []), ms]);
    } catch (e) {
      errors.push(`${job.key} failed: ${errorText(e)}`);
      live = live.filter((j) => j !== job);
    }
    progress.tick();
  };
  for (const job of [...live]) await attempt(job, false);
  for (let r = 0; r < runs; r++) for (const job of [...live]) await attempt(job, true);
  const out = new Map<string, Measured>();
  for (const job of live) {
    const runsMs = times.get(job.key) ?? [];
    if (runsMs.length) out.set(job.key, { tokPerS: job.tokens / (median(runsMs) / 1000), runsMs });
  }
  return out;
}

function shortPath(file: string): string {
  return path.relative(process.cwd(), file) || file;
}

function errorText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

/** Both engines for one model and thread count, measured round by round. */
async function runRow(
  ctx: BenchContext, model: BenchModel, llModel: LlamaModel, threads: number, sizes: Sizes, chunkSizes: number[], row: SpeedRow,
): Promise<void> {
  const o = ctx.options;
  const prompt = promptTokens(sizes.prefillTokens, model.firstPlainToken, model.vocabSize);
  const decodePrompt = prompt.slice(0, sizes.decodePrompt);
  const file = o.kvpackFormat === 'hf' ? model.hfDir : model.gguf;
  row.kvpackFile = shortPath(file);
  let kv: KvpackEngine | undefined;
  let ll: LlamaCppEngine | undefined;
  try {
    try {
      kv = await KvpackEngine.open(file, { threads, cache: o.cache });
      row.kvpackFormat = kv.model.format;
    } catch (e) {
      row.errors.push(`kvpack could not load ${row.kvpackFile}: ${errorText(e)}`);
    }
    try {
      ll = await LlamaCppEngine.open(llModel, {
        threads,
        // Room for the prefill prompt; llama.cpp rounds context sizes up to a multiple of 256.
        contextSize: Math.max(sizes.prefillTokens, sizes.decodePrompt + sizes.decodeTokens) + 256,
        batchSize: sizes.prefillTokens,
        flashAttention: o.flashAttention,
      });
      row.llamaFlashAttention = ll.flashAttention;
    } catch (e) {
      row.errors.push(`llama.cpp could not create a context: ${errorText(e)}`);
    }
    const decodeJobs: Job[] = [];
    const prefillJobs: Job[] = [];
    if (kv) {
      const engine = kv;
      decodeJobs.push({ key: 'kvpack decode', tokens: sizes.decodeTokens, run: () => engine.decode(decodePrompt, sizes.decodeTokens) });
      for (const c of chunkSizes) prefillJobs.push({ key: `kvpack prefill ${c}`, tokens: sizes.prefillTokens, run: () => engine.prefill(prompt, c) });
    }
    if (ll) {
      const engine = ll;
      decodeJobs.push({ key: 'llama.cpp decode', tokens: sizes.decodeTokens, run: () => engine.decode(decodePrompt, sizes.decodeTokens) });
      prefillJobs.push({ key: 'llama.cpp prefill', tokens: sizes.prefillTokens, run: () => engine.prefill(prompt) });
    }
    const progress = new Progress({
      total: (o.runs + 1) * (decodeJobs.length + prefillJobs.length),
      label: `speed ${model.id} ×${threads}`,
      unit: 'runs',
    });
    const m = new Map([
      ...(await measureInterleaved(decodeJobs, o.runs, progress, row.errors)),
      ...(await measureInterleaved(prefillJobs, o.runs, progress, row.errors)),
    ]);
    progress.done(row.errors.length ? `${row.errors.length} error(s)` : undefined);
    row.kvpackDecode = m.get('kvpack decode') ?? null;
    if (kv) {
      // llama.cpp reads the same GGUF weights and keeps an f16 KV cache of the same tokens
      const weights = kv.model.weights.bytes;
      row.kvpackStepBytes = weights + kv.kvBytesAfterDecode;
      row.llamaStepBytes = weights + kvBytesPerToken(kv.model.config, 2) * (sizes.decodePrompt + sizes.decodeTokens);
    }
    row.llamaDecode = m.get('llama.cpp decode') ?? null;
    row.llamaPrefill = m.get('llama.cpp prefill') ?? null;
    for (const c of chunkSizes) {
      const p = m.get(`kvpack prefill ${c}`);
      if (!p) continue;
      row.kvpackPrefillByChunk[c] = p;
      if (!row.kvpackPrefill || p.tokPerS > row.kvpackPrefill.tokPerS) {
        row.kvpackPrefill = p;
        row.kvpackChunk = c;
      }
    }
  } finally {
    await kv?.close();
    await ll?.close();
  }
}


function sizesFor(o: BenchContext['options']): Sizes {
  const decode = o.decodeTokens ?? (o.quick ? 16 : 64);
  return { decodePrompt: decode, decodeTokens: decode, prefillTokens: o.prefillTokens ?? (o.quick ? 128 : 512) };
}

async function runSpeed(ctx: BenchContext): Promise<SectionResult> {
  const o = ctx.options;
  const sizes = sizesFor(o);
  const fitting = o.chunkSizes.filter((c) => c <= sizes.prefillTokens);
  const chunkSizes = fitting.length ? fitting : [sizes.prefillTokens];
  const rows: SpeedRow[] = [];
  const llama = await ctx.llama();
  for (const spec of ctx.selectedModels()) {
    const model = await ctx.model(spec);
    const llModel = await llama.loadModel(model.gguf);
    try {
      for (const threads of o.threads) {
        const row: SpeedRow = {
          model: spec.label, threads, kvpackFile: '', llamaFile: shortPath(model.gguf), kvpackFormat: null,
          kvpackDecode: null, llamaDecode: null, kvpackPrefill: null, kvpackChunk: null, kvpackPrefillByChunk: {},
          llamaPrefill: null, llamaFlashAttention: null, kvpackStepBytes: null, llamaStepBytes: null,
          bandwidth: await readBandwidth(threads), load: [os.loadavg()[0]!, 0], errors: [],
        };
        await runRow(ctx, model, llModel, threads, sizes, chunkSizes, row);
        row.load[1] = os.loadavg()[0]!;
        for (const e of row.errors) ctx.log(`  ${e}`);
        rows.push(row);
      }
    } finally {
      await llModel.dispose();
    }
  }
  return { tables: speedTables(rows, sizes, o.runs, chunkSizes, o.cache), data: { sizes, runs: o.runs, rows } };
}

function speedTables(rows: SpeedRow[], sizes: Sizes, runs: number, chunkSizes: number[], cache: string): Table[] {
  const fa = [...new Set(rows.map((r) => r.llamaFlashAttention).filter((x) => x !== null))];
  const main: Table = {
    title: 'Speed: kvpack vs llama.cpp (tokens/s, higher is better)',
    columns: [
      { key: 'model', header: 'model', align: 'left' },
      { key: 'threads', header: 'threads', format: String },
      { key: 'kvDecode', header: 'kvpack decode' },
      { key: 'llDecode', header: 'llama.cpp decode' },
      { key: 'decodeRatio', header: 'ratio', format: formatRatio },
      { key: 'kvRoofline', header: 'kvpack % read bw', format: formatShare },
      { key: 'llRoofline', header: 'llama.cpp % read bw', format: formatShare },
      { key: 'kvPrefill', header: 'kvpack prefill' },
      { key: 'kvChunk', header: 'chunk', format: String },
      { key: 'llPrefill', header: 'llama.cpp prefill' },
      { key: 'prefillRatio', header: 'ratio', format: formatRatio },
      { key: 'load', header: 'load', align: 'left' },
      { key: 'files', header: 'files', align: 'left' },
    ],
    rows: rows.map((r) => ({
      model: r.model,
      threads: r.threads,
      kvDecode: r.kvpackDecode?.tokPerS ?? null,
      llDecode: r.llamaDecode?.tokPerS ?? null,
      decodeRatio: ratioCell(r.kvpackDecode?.tokPerS, r.llamaDecode?.tokPerS),
      kvRoofline: r.kvpackStepBytes === null ? null : rooflineShare(r.kvpackStepBytes, r.kvpackDecode?.tokPerS, r.bandwidth),
      llRoofline: r.llamaStepBytes === null ? null : rooflineShare(r.llamaStepBytes, r.llamaDecode?.tokPerS, r.bandwidth),
      kvPrefill: r.kvpackPrefill?.tokPerS ?? null,
      kvChunk: r.kvpackChunk,
      llPrefill: r.llamaPrefill?.tokPerS ?? null,
      prefillRatio: ratioCell(r.kvpackPrefill?.tokPerS, r.llamaPrefill?.tokPerS),
      load: r.load.map((l) => l.toFixed(1)).join('→'),
      files: r.kvpackFile === r.llamaFile ? `both: ${r.llamaFile}` : `kvpack: ${r.kvpackFile || '—'}; llama.cpp: ${r.llamaFile}`,
    })),
    notes: [
      `decode: ${sizes.decodeTokens} greedy tokens after a ${sizes.decodePrompt}-token prompt (timed: ${sizes.decodeTokens} single-token forward passes + picking each next token); ` +
        `prefill: one ${sizes.prefillTokens}-token prompt into an empty cache (llama.cpp batch ${sizes.prefillTokens}; kvpack at its best chunk size, shown).`,
      `load: the 1-minute load average when the row started → ended (the machine has ${os.availableParallelism()} cores).`,
      `each number: median of ${runs} timed run(s) after a warm-up, wall clock; same token ids and thread count for both engines; ratio = kvpack / llama.cpp.`,
      `% read bw (roofline): bytes one decode step must read (weights + KV held) × decode tok/s, over the read bandwidth the streaming-read kernel reached in this run at the same thread count (` +
        [...new Map(rows.map((r) => [r.threads, r.bandwidth]))].map(([t, bw]) => `${t} thread(s): ${(bw / 1e9).toFixed(1)} GB/s`).join(', ') + ').',
      `kvpack cache: ${cache}; llama.cpp: node-llama-cpp prebuilt CPU binary, f16 KV cache, flash attention ${fa.length ? fa.map((x) => (x === 'auto' ? 'auto' : x ? 'on' : 'off')).join('/') : '?'}.`,
      ...slowerWithThreads(rows),
      ...rows.flatMap((r) => r.errors.map((e) => `${r.model} ×${r.threads}: ${e}`)),
    ],
  };
  const byChunk: Table = {
    title: 'kvpack prefill by chunk size (tokens/s)',
    columns: [
      { key: 'model', header: 'model', align: 'left' },
      { key: 'threads', header: 'threads', format: String },
      ...chunkSizes.map((c) => ({ key: `c${c}`, header: `chunk ${c}` })),
    ],
    rows: rows.map((r) => {
      const out: Record<string, Cell> = { model: r.model, threads: r.threads };
      for (const c of chunkSizes) out[`c${c}`] = r.kvpackPrefillByChunk[c]?.tokPerS ?? null;
      return out;
    }),
  };
  return chunkSizes.length > 1 ? [main, byChunk] : [main];
}

/**
 * Flags numbers where more threads made an engine slower: the per-step cost of waking and
 * synchronising threads outweighed the split work (small models, few cores, or other processes
 * holding a core), so the ratio in that row says more about scheduling than about the kernels.
 */
function slowerWithThreads(rows: SpeedRow[]): string[] {
  const notes: string[] = [];
  const pick: [string, (r: SpeedRow) => Measured | null][] = [
    ['kvpack decode', (r) => r.kvpackDecode], ['llama.cpp decode', (r) => r.llamaDecode],
    ['kvpack prefill', (r) => r.kvpackPrefill], ['llama.cpp prefill', (r) => r.llamaPrefill],
  ];
  for (const r of rows) {
    const base = rows.find((x) => x.model === r.model && x.threads === 1);
    if (!base || r.threads === 1) continue;
    for (const [what, get] of pick) {
      const one = get(base)?.tokPerS;
      const many = get(r)?.tokPerS;
      if (one && many && many < 0.8 * one) {
        notes.push(`${r.model}: ${what} is slower at ${r.threads} threads than at 1 (${formatNumber(many)} vs ${formatNumber(one)} tok/s): thread wake-up and synchronisation cost more than the split work saved; read that row's ratio with care.`);
      }
    }
  }
  return notes;
}

export const speedSection: Section = {
  id: 'speed',
  describe: 'decode and prefill tokens/s, kvpack against llama.cpp on the same GGUF',
  run: runSpeed,
};
