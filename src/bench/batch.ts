import os from 'node:os';
import type { LlamaModel, Token } from 'node-llama-cpp';
import { loadModel, type Model } from '../engine/model.js';
import { argmax } from '../engine/sample.js';
import type { BenchContext, Section, SectionResult } from './section.js';
import { MODEL_SPECS, type BenchModel } from './models.js';
import { promptTokens } from './speed.js';
import { formatRatio, median, ratioCell, type Table } from './table.js';

/**
 * Batched decode: N concurrent greedy streams stepped together, kvpack through `model.batch` (one
 * forward pass over all streams' rows per token, as `kvpack serve` runs them) and llama.cpp through N
 * sequences of one context (node-llama-cpp batches the sequences' tokens into one decode). Aggregate
 * tokens/s and the ratio to one stream of the same engine.
 */

/** The models run unless --only names others. */
const DEFAULT_MODELS = ['135m-f16', '1b-q4_k_m'];
const PROMPT_TOKENS = 32;

interface Row {
  model: string;
  threads: number;
  streams: number;
  /** Aggregate tokens/s (median run), or null when the engine failed. */
  kvpack: number | null;
  llama: number | null;
  /** 1-minute load average when the model's rounds ended (the machine is shared). */
  load: number;
}

/** ms for `steps` greedy tokens of each of `streams` sessions after their 32-token prompts (prefilled untimed). */
function kvpackRun(model: Model, bench: BenchModel, streams: number, steps: number, cache: string): number {
  const batch = model.batch({ rows: streams, chunkSize: PROMPT_TOKENS });
  const sessions = Array.from({ length: streams }, () => model.session({ cache, context: PROMPT_TOKENS + steps + 1 }));
  try {
    const next = sessions.map((s, i) => {
      const prefill = batch.prefill(s, promptTokens(PROMPT_TOKENS, bench.firstPlainToken, bench.vocabSize, 100 + i));
      let r = prefill.next();
      while (!r.done) r = prefill.next();
      return argmax(r.value);
    });
    const vocab = model.config.vocabSize;
    const t0 = performance.now();
    for (let step = 0; step < steps; step++) {
      const logits = batch.decode(sessions, next);
      for (let i = 0; i < streams; i++) next[i] = argmax(logits.subarray(i * vocab, (i + 1) * vocab));
    }
    return performance.now() - t0;
  } finally {
    for (const s of sessions) s.dispose();
    batch.free();
  }
}

/** The same on llama.cpp: `streams` sequences of one context, each generating greedily, all at once. */
async function llamaRun(model: LlamaModel, bench: BenchModel, streams: number, steps: number, threads: number, flashAttention: boolean | 'auto'): Promise<number> {
  const context = await model.createContext({
    sequences: streams, threads, flashAttention,
    contextSize: streams * (PROMPT_TOKENS + steps + 8), // llama.cpp splits it evenly among the sequences
    batchSize: Math.max(streams, PROMPT_TOKENS),
  });
  try {
    if (context.currentThreads !== threads) throw new Error(`llama.cpp context runs ${context.currentThreads} threads, asked for ${threads}`);
    const seqs = Array.from({ length: streams }, () => context.getSequence());
    const prompts = seqs.map((_, i) => promptTokens(PROMPT_TOKENS, bench.firstPlainToken, bench.vocabSize, 100 + i) as Token[]);
    for (const [i, seq] of seqs.entries()) await seq.evaluateWithoutGeneratingNewTokens(prompts[i]!.slice(0, -1));
    const t0 = performance.now();
    // until each stream's last token arrives (ending a generator early is not part of decoding)
    const ends = await Promise.all(seqs.map(async (seq, i) => {
      let produced = 0;
      // greedy; EOG tokens are yielded rather than ending generation, so every stream makes `steps` tokens
      for await (const _ of seq.evaluate([prompts[i]!.at(-1)!], { temperature: 0, yieldEogToken: true })) {
        if (++produced >= steps) return performance.now();
      }
      throw new Error(`a llama.cpp sequence ended after ${produced} of ${steps} tokens`);
    }));
    return Math.max(...ends) - t0;
  } finally {
    await context.dispose();
  }
}

async function runBatch(ctx: BenchContext): Promise<SectionResult> {
  const o = ctx.options;
  const steps = o.decodeTokens ?? (o.quick ? 8 : 64);
  const counts = o.quick ? [1, 8] : [1, 2, 4, 8, 16];
  const specs = o.only ? ctx.selectedModels() : MODEL_SPECS.filter((m) => DEFAULT_MODELS.includes(m.id));
  const llama = await ctx.llama();
  const rows: Row[] = [];
  const errors: string[] = [];
  for (const spec of specs) {
    const bench = await ctx.model(spec);
    const llModel = await llama.loadModel(bench.gguf);
    try {
      for (const threads of o.threads) {
        const model = await loadModel(bench.gguf, { threads });
        try {
          const times = counts.map(() => ({ kvpack: [] as number[], llama: [] as number[] }));
          // one warm-up round, then `runs` rounds, each running every count on both engines in turn
          for (let r = 0; r <= o.runs; r++) {
            for (const [c, streams] of counts.entries()) {
              ctx.log(`batch: ${spec.id}, ${threads} threads, ${streams} streams, round ${r}/${o.runs}`);
              const kv = kvpackRun(model, bench, streams, steps, o.cache);
              const ll = await llamaRun(llModel, bench, streams, steps, threads, o.flashAttention).catch((e: unknown) => {
                if (r === 0) errors.push(`llama.cpp, ${spec.id}, ${streams} streams: ${e instanceof Error ? e.message : String(e)}`);
                return undefined;
              });
              if (r === 0) continue;
              times[c]!.kvpack.push(kv);
              if (ll !== undefined) times[c]!.llama.push(ll);
            }
          }
          const tokS = (ms: number[], streams: number): number | null => (ms.length ? (streams * steps) / (median(ms) / 1000) : null);
          const load = os.loadavg()[0]!;
          for (const [c, streams] of counts.entries()) {
            rows.push({ model: spec.id, threads, streams, kvpack: tokS(times[c]!.kvpack, streams), llama: tokS(times[c]!.llama, streams), load });
          }
        } finally {
          await model.close();
        }
      }
    } finally {
      await llModel.dispose();
    }
  }
  const one = (r: Row, key: 'kvpack' | 'llama'): number | null => rows.find((x) => x.model === r.model && x.threads === r.threads && x.streams === 1)?.[key] ?? null;
  const table: Table = {
    title: `Batched decode: aggregate tokens/s of N concurrent greedy streams (${PROMPT_TOKENS}-token prompts, ${steps} tokens each)`,
    columns: [
      { key: 'model', header: 'model', align: 'left' },
      { key: 'threads', header: 'threads', format: String },
      { key: 'streams', header: 'streams', format: String },
      { key: 'kvpack', header: 'kvpack tok/s' },
      { key: 'kvpackRatio', header: 'kvpack vs 1 stream', format: formatRatio },
      { key: 'llama', header: 'llama.cpp tok/s' },
      { key: 'llamaRatio', header: 'llama.cpp vs 1 stream', format: formatRatio },
      { key: 'vs', header: 'kvpack / llama.cpp', format: formatRatio },
      { key: 'load', header: 'load' },
    ],
    rows: rows.map((r) => ({
      model: r.model, threads: r.threads, streams: r.streams, kvpack: r.kvpack, kvpackRatio: ratioCell(r.kvpack, one(r, 'kvpack')),
      llama: r.llama, llamaRatio: ratioCell(r.llama, one(r, 'llama')), vs: ratioCell(r.kvpack, r.llama), load: r.load,
    })),
    notes: [
      `kvpack: model.batch, one forward pass over every stream's row per token (what kvpack serve runs), cache ${o.cache}; llama.cpp: N sequences of one context, evaluated concurrently (node-llama-cpp batches them into one decode)`,
      `median of ${o.runs} run(s) after a warm-up; the engines and stream counts run in turn, so a burst of load slows all of them; prompts prefilled untimed`,
      ...errors,
    ],
  };
  return { tables: [table], data: rows };
}

export const batchSection: Section = {
  id: 'batch',
  describe: `batched decode: aggregate tok/s of 1, 2, 4, 8, 16 concurrent greedy streams against one (${DEFAULT_MODELS.join(', ')} unless --only)`,
  defaultOn: false,
  run: runBatch,
};
