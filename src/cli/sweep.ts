import { UsageError } from '../errors.js';
import { resolveModel } from '../hub/download.js';
import { describeFailure, runQueuedSweep, type QueueSweepEvent } from '../eval/coordinator.js';
import { describeQueue, queueConnection } from '../eval/queue.js';
import { ResultStore } from '../eval/store.js';
import { describeRow, loadPlan, planSweep, runSweep, SweepRowError } from '../eval/sweep.js';
import { Progress } from '../util/progress.js';
import { exitSoon, intOption, parse, threadsOption } from './args.js';

const HELP = `Usage: kvpack sweep PLAN.json [--store FILE] [--dry-run] [--json] [--threads K] [--queue URL [--attempts N]]

Runs every (model × cache spec × task) of a plan and appends one JSON line per finished row to the
store (default: the plan's "store", else NAME.jsonl beside the plan). Rows already in the store are skipped,
so an interrupted sweep resumes where it stopped. Every cache spec is checked before anything runs.
  --dry-run   list the rows and whether each is done; run nothing
  --json      print the rows (appended, or planned with --dry-run) as JSON lines
Plan: { "name", "store", "models": [...], "caches": ["h2o(budget={b})", ...], "vars": { "b": [0.5, 0.2] },
        "tasks": [{ "task": "ppl", "data": "wikitext2", "ctx": 2048, "chunks": 2, "mode": "decode" }], "seed" }
Paths in a plan (models, store, data files) are relative to the plan's folder, so it runs the same
from any directory. Then: kvpack report --store FILE.
  --store FILE  append to FILE instead of the plan's store
  --threads K   worker threads (default: one per CPU core; with --queue each kvpack worker takes its own)
  --queue URL   run the rows on kvpack worker processes (any machines) through Redis at URL
                (redis://[:PASSWORD@]HOST:PORT[/DB], rediss:// for TLS) instead of here: this process
                enqueues the rows not in the store and writes each result as it comes back
  --attempts N  with --queue: tries per row before it is reported failed (default 3)
  -h, --help    this text
`;

/** The options `kvpack sweep` takes (its --help lists each). */
export const OPTIONS = {
  store: { type: 'string' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  threads: { type: 'string' },
  queue: { type: 'string' },
  attempts: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function sweepCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('sweep', argv, OPTIONS);
  if (values.help) return void process.stdout.write(HELP);
  if (positionals.length !== 1) throw new UsageError(`sweep takes one plan file, got ${positionals.length ? `"${positionals.join(' ')}"` : 'none'} (see kvpack sweep --help)`);
  const plan = loadPlan(positionals[0]!);
  const threads = threadsOption(values.threads);
  if (values.queue !== undefined) queueConnection(values.queue); // checked before anything runs
  if (values.attempts !== undefined && values.queue === undefined) throw new UsageError('--attempts goes with --queue (see kvpack sweep --help)');
  if (values.threads !== undefined && values.queue !== undefined) throw new UsageError('--threads does not go with --queue: the workers run the rows (kvpack worker --threads K)');
  const attempts = intOption('attempts', values.attempts, 3, 1);
  const store = ResultStore.open(values.store ?? plan.store);

  if (values['dry-run']) {
    // A dry run never downloads: a repo id not in the HF cache is listed as unknown.
    const rows = await planSweep(plan, { store, resolve: (m) => resolveModel(m, { offline: true, onProgress: false }).catch(() => undefined) });
    const lines: string[] = [];
    if (values.json) {
      for (const r of rows) {
        lines.push(JSON.stringify({ key: r.key ?? null, model: r.model, cache: r.cache, task: r.task.name, params: r.params, units: r.units ?? null, done: r.done }));
      }
    } else {
      const done = rows.filter((r) => r.done).length;
      const units = rows.filter((r) => !r.done).reduce((n, r) => n + (r.units ?? 0), 0);
      lines.push(`${plan.name}: ${rows.length} rows, ${done} done, ${rows.length - done} to run (${units} tok) → ${store.file}`);
      for (const r of rows) {
        const status = r.done ? 'done' : r.key === undefined ? '?' : 'run';
        lines.push(`  ${status.padEnd(4)} ${describeRow(r)}${r.units === undefined ? '' : `  (${r.units} tok)`}`);
      }
    }
    return void process.stdout.write(`${lines.join('\n')}\n`);
  }

  let bar: Progress | undefined;
  const onProgress = (e: QueueSweepEvent): void => {
    switch (e.type) {
      case 'plan':
        bar = new Progress({ total: e.total, label: `sweep ${plan.name}`, unit: 'tok' });
        break;
      case 'skip':
        bar?.skip(e.units);
        break;
      case 'advance':
        bar?.tick(e.units);
        break;
      case 'total':
        bar?.setTotal(e.total);
        break;
      case 'finish':
        if (values.json) process.stdout.write(`${JSON.stringify(e.result)}\n`);
        break;
      case 'fail':
        if (values.queue === undefined) bar?.done('failed');
        else process.stderr.write(`\nsweep: failed: ${describeRow(e.row)}: ${(e.error as Error).message}\n`);
        break;
      case 'queue':
        bar?.setStatus(`${e.running} running${e.failed ? `, ${e.failed} failed` : ''}`);
        break;
      case 'redis':
        process.stderr.write(e.up ? '\nsweep: Redis is back\n' : `\nsweep: Redis at ${describeQueue(values.queue!)} unreachable (${e.error}); waiting for it\n`);
        break;
      default:
        break;
    }
  };
  process.stderr.write(`sweep ${plan.name}: appending to ${store.file} (${store.rows().length} rows there now)\n`);
  if (values.queue !== undefined) {
    process.stderr.write(`sweep ${plan.name}: rows run by kvpack worker --queue ${describeQueue(values.queue)}\n`);
    let summary;
    try {
      summary = await runQueuedSweep(plan, { store, queue: values.queue, attempts, onProgress });
    } finally {
      exitSoon();
    }
    bar?.done(summary.failed.length ? `${summary.failed.length} failed` : undefined);
    if (!values.json) process.stdout.write(`${plan.name}: ${summary.ran} rows run, ${summary.skipped} already in ${store.file}\n`);
    if (summary.failed.length > 0) {
      const list = summary.failed.map((f) => `\n  ${describeFailure(f)}`).join('');
      throw new SweepRowError(`${summary.failed.length} of ${summary.rows} rows failed (finished rows are kept in ${store.file}; run the sweep again to retry them):${list}`);
    }
    return;
  }
  const summary = await runSweep(plan, { store, onProgress, threads });
  bar?.done();
  if (!values.json) {
    process.stdout.write(`${plan.name}: ${summary.ran} rows run, ${summary.skipped} already in ${store.file}\n`);
  }
}
