import { ROW_FORMAT, type ResultRow, type TaskParams } from '../../src/eval/store.js';

/** Result rows like a small sweep's: every task the report draws, a few caches each. */
export function fixtureRows(): ResultRow[] {
  const rows: ResultRow[] = [];
  const caches: [string, number][] = [
    ['full+fp32', 6144], ['full', 3072],
    ['h2o(budget=0.5)', 1600], ['h2o(budget=0.2)', 700], ['h2o(budget=0.1)', 380],
    ['window(sinks=4,recent=0.5)', 1540], ['window(sinks=4,recent=0.2)', 620],
  ];
  const add = (cache: string, perToken: number, task: string, params: TaskParams, metrics: Record<string, number>): void => {
    rows.push({
      format: ROW_FORMAT,
      key: `fp|${cache}|${task}|${JSON.stringify(params)}`, model: '../shared/models/ref-6m', model_fingerprint: 'f'.repeat(64),
      cache, task, params, metrics,
      memory: { kv_bytes_peak: perToken * 2048, kv_bytes_per_token: perToken, bits_per_value: cache.includes('fp32') ? 32 : 16, compression: 3072 / perToken },
      seconds: 1, seed: 0,
      versions: { kvpack: '0.1.0', node: 'v20' }, finished_at: '2026-01-01T00:00:00.000Z',
    });
  };
  caches.forEach(([cache, perToken], i) => {
    add(cache, perToken, 'ppl', { data: 'wikitext2', ctx: 2048, chunks: 1, mode: 'decode' }, { ppl: 600 + i * 7, tokens: 2047, chunks: 1 });
    add(cache, perToken, 'fidelity', { data: 'wikitext2', ctx: 1024, chunks: 1, mode: 'decode' }, { kl: i * 0.004, kl_max: i * 0.1, top1: 1 - i * 0.02, ppl: 600 + i, ppl_full: 600, tokens: 1023, chunks: 1 });
    // fidelity alone also ran h2o in fp32, before the fp16 ones: a method the other plots lack, drawn first
    if (cache === 'full') add('h2o(budget=0.2)+fp32', 1400, 'fidelity', { data: 'wikitext2', ctx: 1024, chunks: 1, mode: 'decode' }, { kl: 0.001, kl_max: 0.05, top1: 0.99, ppl: 600, ppl_full: 600, tokens: 1023, chunks: 1 });
    const grid: Record<string, number> = {};
    for (const L of [256, 512]) for (const d of [0, 50, 100]) grid[`acc_L${L}_d${d}`] = ((L / 256 + d / 50 + i) % 3) / 2;
    add(cache, perToken, 'passkey', { lengths: '256,512', depths: '0,50,100', trials: 2 }, { accuracy: 0.5, ...grid, trials: 2 });
    add(cache, perToken, 'needle', { lengths: '256,512', depths: '0,50,100', trials: 2 }, { accuracy: 0.25, ...grid, trials: 2 });
    add(cache, perToken, 'xsum', { items: 10, stemmer: 'porter' }, { rouge1: 0.1 - i * 0.005, rouge2: 0.01, rougeL: 0.08, items: 10, skipped: 0 });
  });
  return rows;
}
