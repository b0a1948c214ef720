import path from 'node:path';
import type { LlamaModel } from 'node-llama-cpp';
import { Progress } from '../util/progress.js';
import type { BenchContext, Section, SectionResult } from './context.js';
import { KvpackEngine, LlamaCppEngine, type Engine } from './engines.js';
import type { BenchModel } from './models.js';
import { formatRatio, median, type Cell, type Table } from './table.js';

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

/** One warm-up run, then `runs` timed runs; throughput from the median. */
async function measure(tokens: number, runs: number, progress: Progress, once: () => Promise<number>): Promise<Measured> {
  await once();
  progress.tick();
  const runsMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    runsMs.push(await once());
    progress.tick();
  }
  return { tokPerS: tokens / (median(runsMs) / 1000), runsMs };
}

function shortPath(file: string): string {
  return path.relative(process.cwd(), file) || file;
}

function errorText(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

async function runKvpack(
  ctx: BenchContext, model: BenchModel, threads: number, sizes: Sizes, chunkSizes: number[], row: SpeedRow, progress: Progress,
): Promise<void> {
  const o = ctx.options;
  const file = o.kvpackFormat === 'hf' ? model.hfDir : model.gguf;
  row.kvpackFile = shortPath(file);
  let engine: KvpackEngine;
  try {
    engine = await KvpackEngine.open(file, { threads, cache: o.cache });
  } catch (e) {
    row.errors.push(`kvpack could not load ${shortPath(file)}: ${errorText(e)}`);
    progress.tick(progressUnits(o.runs, chunkSizes.length, 'kvpack'));
    return;
  }
  try {
    row.kvpackFormat = engine.model.format;
    const prompt = promptTokens(sizes.prefillTokens, model.firstPlainToken, model.vocabSize);
    const decodePrompt = prompt.slice(0, sizes.decodePrompt);
    row.kvpackDecode = await measure(sizes.decodeTokens, o.runs, progress, () => engine.decode(decodePrompt, sizes.decodeTokens));
    for (const chunk of chunkSizes) {
      const m = await measure(sizes.prefillTokens, o.runs, progress, () => engine.prefill(prompt, chunk));
      row.kvpackPrefillByChunk[chunk] = m;
      if (!row.kvpackPrefill || m.tokPerS > row.kvpackPrefill.tokPerS) {
        row.kvpackPrefill = m;
        row.kvpackChunk = chunk;
      }
    }
  } catch (e) {
    row.errors.push(`kvpack failed: ${errorText(e)}`);
  } finally {
    await engine.close();
  }
}

async function runLlamaCpp(ctx: BenchContext, llModel: LlamaModel, threads: number, sizes: Sizes, model: BenchModel, row: SpeedRow, progress: Progress): Promise<void> {
  const o = ctx.options;
  const engine = await LlamaCppEngine.open(llModel, {
    threads,
    // Room for the prefill prompt; llama.cpp rounds context sizes up to a multiple of 256.
    contextSize: Math.max(sizes.prefillTokens, sizes.decodePrompt + sizes.decodeTokens) + 256,
    batchSize: sizes.prefillTokens,
    flashAttention: o.flashAttention,
  });
  try {
    row.llamaFlashAttention = engine.flashAttention;
    const prompt = promptTokens(sizes.prefillTokens, model.firstPlainToken, model.vocabSize);
    const decodePrompt = prompt.slice(0, sizes.decodePrompt);
    row.llamaDecode = await measure(sizes.decodeTokens, o.runs, progress, () => engine.decode(decodePrompt, sizes.decodeTokens));
    row.llamaPrefill = await measure(sizes.prefillTokens, o.runs, progress, () => engine.prefill(prompt));
  } catch (e) {
    row.errors.push(`llama.cpp failed: ${errorText(e)}`);
  } finally {
    await engine.close();
  }
}

function progressUnits(runs: number, chunks: number, engine: 'kvpack' | 'llama.cpp'): number {
  const perNumber = runs + 1;
  return engine === 'kvpack' ? perNumber * (1 + chunks) : perNumber * 2;
}

const ratio = (a: Measured | null, b: Measured | null): Cell => (a && b ? a.tokPerS / b.tokPerS : null);

function sizesFor(quick: boolean): Sizes {
  return quick ? { decodePrompt: 16, decodeTokens: 16, prefillTokens: 128 } : { decodePrompt: 64, decodeTokens: 64, prefillTokens: 512 };
}

async function runSpeed(ctx: BenchContext): Promise<SectionResult> {
  const o = ctx.options;
  const sizes = sizesFor(o.quick);
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
          llamaPrefill: null, llamaFlashAttention: null, errors: [],
        };
        const progress = new Progress({
          total: progressUnits(o.runs, chunkSizes.length, 'kvpack') + progressUnits(o.runs, 0, 'llama.cpp'),
          label: `speed ${spec.id} ×${threads}`,
          unit: 'runs',
        });
        // One engine at a time: on a small machine an idle engine's threads must not share the cores.
        await runKvpack(ctx, model, threads, sizes, chunkSizes, row, progress);
        await runLlamaCpp(ctx, llModel, threads, sizes, model, row, progress);
        progress.done(row.errors.length ? `${row.errors.length} error(s)` : undefined);
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
      { key: 'kvPrefill', header: 'kvpack prefill' },
      { key: 'kvChunk', header: 'chunk', format: String },
      { key: 'llPrefill', header: 'llama.cpp prefill' },
      { key: 'prefillRatio', header: 'ratio', format: formatRatio },
      { key: 'files', header: 'files', align: 'left' },
    ],
    rows: rows.map((r) => ({
      model: r.model,
      threads: r.threads,
      kvDecode: r.kvpackDecode?.tokPerS ?? null,
      llDecode: r.llamaDecode?.tokPerS ?? null,
      decodeRatio: ratio(r.kvpackDecode, r.llamaDecode),
      kvPrefill: r.kvpackPrefill?.tokPerS ?? null,
      kvChunk: r.kvpackChunk,
      llPrefill: r.llamaPrefill?.tokPerS ?? null,
      prefillRatio: ratio(r.kvpackPrefill, r.llamaPrefill),
      files: r.kvpackFile === r.llamaFile ? `both: ${r.llamaFile}` : `kvpack: ${r.kvpackFile || '—'}; llama.cpp: ${r.llamaFile}`,
    })),
    notes: [
      `decode: ${sizes.decodeTokens} greedy tokens after a ${sizes.decodePrompt}-token prompt (timed: ${sizes.decodeTokens} single-token forward passes + picking each next token); ` +
        `prefill: one ${sizes.prefillTokens}-token prompt into an empty cache (llama.cpp batch ${sizes.prefillTokens}; kvpack at its best chunk size, shown).`,
      `each number: median of ${runs} timed run(s) after a warm-up, wall clock; same token ids and thread count for both engines; ratio = kvpack / llama.cpp.`,
      `kvpack cache: ${cache}; llama.cpp: node-llama-cpp prebuilt CPU binary, f16 KV cache, flash attention ${fa.length ? fa.map((x) => (x === 'auto' ? 'auto' : x ? 'on' : 'off')).join('/') : '?'}.`,
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

export const speedSection: Section = {
  id: 'speed',
  describe: 'decode and prefill tokens/s, kvpack against llama.cpp on the same GGUF',
  run: runSpeed,
};
