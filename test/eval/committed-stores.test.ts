import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveModel } from '../../src/hub/download.js';
import { buildTables } from '../../src/eval/report.js';
import { ResultStore } from '../../src/eval/store.js';
import { loadPlan, planSweep } from '../../src/eval/sweep.js';

// The committed stores were measured when a spec without a codec stored f32: read in today's terms
// (fp16 default), every committed plan still finds all its rows, and every table has its baseline.
const PLANS = fs.readdirSync('sweeps').filter((f) => f.endsWith('.json')).map((f) => path.join('sweeps', f));

describe('committed sweep plans and stores', () => {
  it.each(PLANS)('%s resumes with nothing left to run', async (file) => {
    const plan = loadPlan(file);
    // two plans name their store relative to the checkout rather than to the plan
    const store = ResultStore.open(fs.existsSync(plan.store) ? plan.store : path.join('results', `${plan.name}.jsonl`));
    const rows = await planSweep(plan, { store, resolve: (m) => resolveModel(m, { offline: true, onProgress: false }).catch(() => undefined) });
    expect(rows.filter((r) => !r.done).map((r) => r.cache)).toEqual([]);
    for (const table of buildTables(store.rows())) {
      const header = table.columns.map((c) => c.header);
      expect(header).toContain('compression × vs fp16');
      const caches = table.rows.map((r) => r.cache);
      const base = caches.includes('full') ? 'full' : caches.includes('full+fp32') ? 'full+fp32' : undefined;
      if (table.task === 'ppl' && base) expect(header, table.title).toContain(`Δ% vs ${base}`);
      if (base) expect(caches[0]).toBe(base);
    }
  });
});
