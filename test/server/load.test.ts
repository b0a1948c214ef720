import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

// npm run load crashed on an API change no test ran it against (issue 22): a tiny run of the script itself.
describe('npm run load', () => {
  it('completes a tiny run with mixed specs and disconnects: no 5xx, KV bytes within the budget in every sample', () => {
    const r = spawnSync(process.execPath, [
      'scripts/load.mjs', '--quick', '--model', 'ref-6m', '--seconds', '2', '--streams', '1,2', '--caches', 'mixed', '--skip-admission', '--json',
    ], { encoding: 'utf8', timeout: 240_000 });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      checks: string[]; budget: number; decodeBatch: unknown[];
      cells: { requests: number; status_5xx: number; status_4xx: number; samples_over_budget: number; kv_bytes_peak: number; disconnects: number; sessions_after: number }[];
    };
    expect(out.checks).toEqual([]);
    expect(out.decodeBatch).toHaveLength(5);
    expect(out.cells).toHaveLength(2);
    for (const c of out.cells) {
      expect(c.requests).toBeGreaterThan(0);
      expect([c.status_5xx, c.status_4xx, c.samples_over_budget, c.sessions_after]).toEqual([0, 0, 0, 0]);
      expect(c.kv_bytes_peak).toBeGreaterThan(0);
      expect(c.kv_bytes_peak).toBeLessThanOrEqual(out.budget);
    }
    expect(out.cells.reduce((n, c) => n + c.disconnects, 0)).toBeGreaterThan(0);
  });
});
