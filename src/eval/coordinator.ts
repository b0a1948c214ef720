import { Queue, QueueEvents } from 'bullmq';
import { refusal, isConnectionError, jobId, queueConnection, QUEUE_NAME, readResult, toJob } from './queue.js';
import type { ResultRow } from './store.js';
import { describeRow, planSweep, rowIdentity, type PlannedRow, type PlanOptions, type SweepEvent, type SweepPlan, type SweepSummary } from './sweep.js';

/**
 * `kvpack sweep --queue`: the coordinator. It enqueues every unit of a plan not yet in the store
 * (job id = the row's store key, so enqueueing twice is harmless), and records each result that
 * comes back. It is the store's only writer, and writes a row only when its key is not there yet,
 * so a unit that ran twice (its worker was thought dead) is still recorded once. Redis holds only
 * what is not in the store: a recorded job is removed. It reads the queue's state every `pollMs`
 * (and on each event) rather than trusting events alone, so a restart of either the coordinator or
 * Redis loses nothing: a job Redis forgot is enqueued again, a result that finished while no
 * coordinator ran is recorded when one starts.
 */

export type QueueSweepEvent =
  | SweepEvent
  /** After each look at the queue: units running on workers, and units failed for good. */
  | { type: 'queue'; running: number; failed: number }
  /** Redis went away (`error` says how) or came back. */
  | { type: 'redis'; up: boolean; error?: string };

export interface QueueSweepOptions extends PlanOptions {
  /** redis:// or rediss:// URL. */
  queue: string;
  /** Tries per unit before it is reported failed (default 3). */
  attempts?: number;
  onProgress?: (event: QueueSweepEvent) => void;
  /** How often the queue's state is read (default 1000 ms). */
  pollMs?: number;
}

export interface QueueSweepSummary extends SweepSummary {
  /** Units that failed every attempt, with the last error. */
  failed: { row: PlannedRow; reason: string }[];
}

interface Pending {
  row: PlannedRow;
  /** Units reported done by the worker running it (the bar's share of this row). */
  reported: number;
  actual: number | undefined;
}

/** Runs a plan's missing rows on the queue's workers, recording their results in the store; returns when every row is recorded or failed. */
export async function runQueuedSweep(plan: SweepPlan, options: QueueSweepOptions): Promise<QueueSweepSummary> {
  const connection = queueConnection(options.queue); // a bad URL fails before the store is locked
  const release = options.store.lock();
  try {
    return await coordinate(plan, options, connection);
  } finally {
    release();
  }
}

async function coordinate(plan: SweepPlan, options: QueueSweepOptions, connection: ReturnType<typeof queueConnection>): Promise<QueueSweepSummary> {
  const rows = await planSweep(plan, options);
  const emit = options.onProgress ?? (() => {});
  const attempts = options.attempts ?? 3;
  let total = rows.reduce((n, r) => n + (r.units ?? 0), 0);
  emit({ type: 'plan', rows, total });
  const pending = new Map<string, Pending>();
  for (const row of rows) {
    if (row.done) emit({ type: 'skip', row, units: row.units ?? 0 });
    else pending.set(jobId(row.key!), { row, reported: 0, actual: row.units });
  }
  const appended: ResultRow[] = [];
  const failed: QueueSweepSummary['failed'] = [];
  const summary = (): QueueSweepSummary => ({ rows: rows.length, ran: appended.length, skipped: rows.length - appended.length - failed.length, appended, failed });
  if (pending.size === 0) return summary();

  const queue = new Queue(QUEUE_NAME, { connection });
  const events = new QueueEvents(QUEUE_NAME, { connection });
  let down = false;
  // a refused password or certificate ends the sweep: every wait below races this
  let refuse: (e: Error) => void = () => {};
  const refused = new Promise<never>((_, reject) => (refuse = reject));
  refused.catch(() => {});
  let denied = false;
  const onError = (e: Error): void => {
    const fatal = refusal(e, options.queue);
    if (fatal) {
      denied = true;
      return refuse(fatal);
    }
    if (down) return;
    down = true;
    emit({ type: 'redis', up: false, error: e.message });
  };
  queue.on('error', onError);
  events.on('error', onError);

  /** Moves a row's share of the bar to `done` of its (possibly corrected) `rowTotal`. */
  const advance = (p: Pending, done: number, rowTotal: number | undefined): void => {
    if (rowTotal !== undefined && rowTotal !== p.actual) {
      total += rowTotal - (p.actual ?? 0);
      p.actual = rowTotal;
      emit({ type: 'total', total });
    }
    if (done > p.reported) emit({ type: 'advance', row: p.row, units: done - p.reported });
    p.reported = Math.max(p.reported, done);
  };
  events.on('progress', ({ jobId: id, data }) => {
    const p = pending.get(id);
    const d = data as { done?: unknown; total?: unknown } | undefined;
    if (p && typeof d?.done === 'number' && typeof d.total === 'number') advance(p, d.done, d.total);
  });
  let wake = (): void => {};
  events.on('completed', () => wake());
  events.on('failed', () => wake());
  events.on('active', ({ jobId: id }) => {
    const p = pending.get(id);
    if (p) emit({ type: 'start', row: p.row });
  });

  const add = (ids: string[]) =>
    queue.addBulk(ids.map((id) => ({
      name: 'unit',
      data: toJob(pending.get(id)!.row),
      opts: { jobId: id, attempts, backoff: { type: 'exponential', delay: 1000 } },
    })));

  /** One look at every pending unit's job: enqueue the missing, record the completed, report the failed. */
  const look = async (first: boolean): Promise<void> => {
    const ids = [...pending.keys()];
    const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
    const missing = ids.filter((_, i) => states[i] === 'unknown');
    if (missing.length > 0) await add(missing);
    let running = 0;
    for (const [i, id] of ids.entries()) {
      const state = states[i];
      if (state === 'active') running++;
      if (state !== 'completed' && state !== 'failed') continue;
      const job = await queue.getJob(id);
      if (!job) continue; // removed meanwhile: the next look enqueues it again
      const p = pending.get(id)!;
      if (state === 'failed' && first) {
        await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true }); // failed in an earlier sweep: tried again
        continue;
      }
      const result = state === 'completed' ? readResult(job.returnvalue) : undefined;
      if (result === undefined) {
        const reason = state === 'failed' ? job.failedReason || 'failed' : 'the worker returned no result';
        failed.push({ row: p.row, reason });
        emit({ type: 'fail', row: p.row, error: new Error(reason) });
        pending.delete(id);
        if (state === 'completed') await job.remove();
        continue;
      }
      advance(p, p.actual ?? p.reported, p.actual);
      const row: ResultRow = { ...rowIdentity(p.row), ...result };
      if (options.store.append(row)) appended.push(row);
      pending.delete(id);
      emit({ type: 'finish', row: p.row, result: row });
      await job.remove();
    }
    emit({ type: 'queue', running, failed: failed.length });
  };

  try {
    let first = true;
    while (pending.size > 0) {
      try {
        await Promise.race([look(first), refused]);
        first = false;
        if (down) {
          down = false;
          emit({ type: 'redis', up: true });
        }
      } catch (e) {
        if (!isConnectionError(e)) throw e;
        onError(e as Error);
      }
      if (pending.size === 0) break;
      await Promise.race([refused, new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, options.pollMs ?? 1000);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      })]);
    }
  } finally {
    // a close waits for replies that a Redis away (or refusing us) never sends: then the caller ends the process
    const closing = Promise.allSettled([events.close(), queue.close()]);
    if (!down && !denied) await closing;
  }
  return summary();
}

/** How a failed unit is listed. */
export function describeFailure(f: QueueSweepSummary['failed'][number]): string {
  return `${describeRow(f.row)}: ${f.reason}`;
}
