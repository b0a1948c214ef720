import { loadModel } from '../engine/model.js';
import { argmax } from '../engine/sample.js';
import type { BenchContext, Section, SectionResult } from './section.js';
import { MODEL_SPECS } from './models.js';
import { promptTokens } from './speed.js';
import { formatNumber, median, type Table } from './table.js';

const CONTEXTS = [1024, 4096, 16384];
const BUDGETED = 'h2o(budget=512,recent=64)';

/**
 * Decode speed and KV bytes per token as the context grows, full cache against a 512-token budget
 * (ref-6m, whose weights are small, so attention shows). The context is filled in 256-token feeds
 * (so a budgeted cache compresses as it goes), then 32 tokens are decoded and timed. Past the
 * model's trained context positions are meaningless, but the arithmetic is the same: timing only.
 */
export const contextScalingSection: Section = {
  id: 'context',
  describe: 'decode tok/s and KV bytes at 1K/4K/16K context: full vs a 512-token budget',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const spec = MODEL_SPECS.find((m) => m.id === 'ref-6m')!;
    const bench = await ctx.model(spec);
    const threads = Math.max(...ctx.options.threads);
    const model = await loadModel(bench.gguf, { threads });
    // timing only: let the cache grow past the trained context
    (model.config as { maxContext: number }).maxContext = Math.max(...CONTEXTS) + 64;
    const decodeTokens = ctx.options.quick ? 8 : 32;
    const contexts = ctx.options.quick ? CONTEXTS.slice(0, 2) : CONTEXTS;
    const rows: Table['rows'] = [];
    try {
      for (const tokens of contexts) {
        const row: Table['rows'][number] = { context: tokens };
        for (const [key, cache] of [['full', 'full'], ['budget', BUDGETED]] as const) {
          const times: number[] = [];
          let bytes = 0;
          for (let run = 0; run < ctx.options.runs; run++) {
            const session = model.session({ cache, chunkSize: 256 });
            const prompt = promptTokens(tokens, bench.firstPlainToken, bench.vocabSize, run);
            for (let i = 0; i < prompt.length; i += 256) session.feed(prompt.slice(i, i + 256));
            let logits = session.feed([prompt[0]!]);
            const t0 = performance.now();
            for (let i = 0; i < decodeTokens; i++) logits = session.feed([argmax(logits)]);
            times.push(performance.now() - t0);
            bytes = session.cache.bytes();
            session.dispose();
          }
          row[`${key}TokS`] = (decodeTokens * 1000) / median(times);
          row[`${key}Bytes`] = bytes / 1024;
        }
        rows.push(row);
        ctx.log(`context ${tokens}: done`);
      }
    } finally {
      await model.close();
    }
    return {
      tables: [{
        title: `Decode speed vs context: full cache vs ${BUDGETED} (ref-6m, ${threads} threads)`,
        columns: [
          { key: 'context', header: 'context tokens', format: (v) => String(v) },
          { key: 'fullTokS', header: 'full tok/s' },
          { key: 'fullBytes', header: 'full KV KiB', format: formatNumber },
          { key: 'budgetTokS', header: 'budget tok/s' },
          { key: 'budgetBytes', header: 'budget KV KiB', format: formatNumber },
        ],
        rows,
        notes: [
          `${decodeTokens} greedy tokens decoded after filling the context; median of ${ctx.options.runs} runs.`,
          'KV KiB is cache.bytes() after decoding: codec storage, positions and policy state.',
          'ref-6m is trained for 2048 positions; beyond that these rows measure speed and bytes only.',
        ],
      }],
    };
  },
};
