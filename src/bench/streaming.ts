import { loadModel } from '../engine/model.js';
import type { BenchContext, Section, SectionResult } from './section.js';
import { MODEL_SPECS } from './models.js';
import { promptTokens } from './speed.js';
import { formatRatio, median, type Table } from './table.js';

/**
 * Decode time per token of a full fixed-budget cache with and without streaming, on the SmolLM2-135M
 * shape: streaming stores keys before RoPE and rotates them at their ranks on every read, which is
 * what this measures against the same cache rotating once at write.
 */

const CACHE = 'window(sinks=4,recent=1020)';
const CODECS = ['fp16', 'fp32'];

interface Row {
  codec: string;
  threads: number;
  plain: number;
  streaming: number;
}

/** Median ms per decoded token of the cache without and with streaming: two sessions of one model, stepped in turn so both see the same load. */
async function decodeMs(ctx: BenchContext, file: string, threads: number, cache: string): Promise<[number, number]> {
  const model = await loadModel(file, { threads });
  try {
    const sessions = [false, true].map((streaming) => model.session({ cache, streaming, context: 1024 }));
    // the caches are full: every decoded token evicts one and (streaming) re-ranks the rest
    for (const s of sessions) s.feed(promptTokens(1024, 17, model.config.vocabSize));
    const times: number[][] = [[], []];
    for (const id of promptTokens(ctx.options.quick ? 4 : 32, 17, model.config.vocabSize, 7)) {
      sessions.forEach((s, i) => {
        const t0 = performance.now();
        s.feed([id]);
        times[i]!.push(performance.now() - t0);
      });
    }
    for (const s of sessions) s.dispose();
    return [median(times[0]!), median(times[1]!)];
  } finally {
    await model.close();
  }
}

export const streamingSection: Section = {
  id: 'streaming',
  describe: `decode ms/token of ${CACHE} with and without --streaming at 1,024 tokens (SmolLM2-135M shape)`,
  defaultOn: false,
  async run(ctx): Promise<SectionResult> {
    const bench = await ctx.model(MODEL_SPECS.find((m) => m.id === '135m-f16')!);
    const rows: Row[] = [];
    for (const threads of ctx.options.threads) {
      for (const codec of CODECS) {
        const cache = `${CACHE}+${codec}`;
        ctx.log(`streaming: ${cache}, ${threads} threads`);
        const [plain, streaming] = await decodeMs(ctx, bench.gguf, threads, cache);
        rows.push({ codec, threads, plain, streaming });
      }
    }
    const table: Table = {
      title: `Streaming decode at 1,024 held tokens, ${bench.label}`,
      columns: [
        { key: 'cache', header: 'cache', align: 'left' },
        { key: 'threads', header: 'threads', format: String },
        { key: 'plain', header: 'ms/token' },
        { key: 'streaming', header: 'ms/token --streaming' },
        { key: 'ratio', header: 'streaming / plain', format: formatRatio },
      ],
      rows: rows.map((r) => ({ cache: `${CACHE}+${r.codec}`, threads: r.threads, plain: r.plain, streaming: r.streaming, ratio: r.streaming / r.plain })),
      notes: [`median of ${ctx.options.quick ? 4 : 32} decoded tokens after a 1,024-token prompt, the two sessions stepped in turn (the same load on both); each decoded token evicts one`],
    };
    return { tables: [table], data: rows };
  },
};
