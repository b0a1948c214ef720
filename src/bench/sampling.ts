import { Sampler, type SamplingOptions } from '../engine/sample.js';
import { seededRandom } from '../util/random.js';
import type { Section, SectionResult } from './section.js';
import { formatNumber, type Table } from './table.js';

/**
 * What choosing a token costs after the forward pass: the sampler chain on one row of logits, per
 * vocabulary size (ref-6m 8192, SmolLM2 49152, Llama-3 128256). The logits are uniform random in
 * [-10, 10], flatter than a language model's, so nucleus sampling without top-k sorts more candidates
 * than it would on real logits: an upper bound.
 */
const VOCABS = [8192, 49152, 128256];

const CHAINS: [string, SamplingOptions][] = [
  ['greedy', { temperature: 0, topP: 1, seed: 0 }],
  ['temperature 0.8, top-p 0.95 (no top-k)', { temperature: 0.8, topP: 0.95, seed: 0 }],
  ["llama-cli's defaults: top-k 40, top-p 0.95, min-p 0.05, T 0.8", { temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05, seed: 0 }],
  ['the same + repetition penalty 1.1 over the last 64', { temperature: 0.8, topP: 0.95, topK: 40, minP: 0.05, repeatPenalty: 1.1, seed: 0 }],
];

export const samplingSection: Section = {
  id: 'sampling',
  describe: 'the sampler chain per token, by vocabulary size (opt-in)',
  defaultOn: false,
  async run(ctx): Promise<SectionResult> {
    const calls = ctx.options.quick ? 50 : 300;
    const rows = CHAINS.map(([chain, options]) => {
      const row: Record<string, string | number> = { chain };
      for (const n of VOCABS) {
        const random = seededRandom(1);
        const logits = Float32Array.from({ length: n }, () => (random() - 0.5) * 20);
        const sampler = new Sampler(n, options);
        sampler.accept(Array.from({ length: 64 }, (_, i) => i * 7));
        for (let i = 0; i < 20; i++) sampler.sample(logits); // warm-up
        const started = performance.now();
        for (let i = 0; i < calls; i++) sampler.sample(logits);
        row[`v${n}`] = (performance.now() - started) / calls;
      }
      return row;
    });
    const table: Table = {
      title: 'Sampling: ms per token, by vocabulary size',
      columns: [{ key: 'chain', header: 'chain', align: 'left' }, ...VOCABS.map((n) => ({ key: `v${n}`, header: `vocab ${n}`, format: formatNumber }))],
      rows,
      notes: [`mean of ${calls} calls on one row of uniform random logits in [-10, 10] (flatter than a model's: an upper bound for nucleus sampling without top-k)`],
    };
    return { tables: [table], data: rows };
  },
};
