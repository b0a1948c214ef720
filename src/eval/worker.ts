import { Worker } from 'bullmq';
import { refusal, queueConnection, QUEUE_NAME, type UnitJob } from './queue.js';
import type { TaskParams, UnitResult } from './store.js';
import { describeRow } from './sweep.js';

/**
 * `kvpack worker`: takes units from the queue one at a time and runs each in a worker thread
 * (unit-thread.ts) that keeps its model loaded. This thread holds the job's lock, renewing it every
 * lockMs / 2: a worker that stops (killed, its machine gone) lets its lock lapse, and another
 * worker's stalled-job check puts the unit back in the queue. Stalling more than MAX_STALLS times
 * fails the unit (a unit that kills its worker is not retried forever).
 */

export interface WorkerOptions {
  /** redis:// or rediss:// URL. */
  queue: string;
  /** Kernel threads of the unit runner. */
  threads: number;
  /** How long a job's lock lasts without renewal, and how often stalled jobs are looked for (default 30000 ms). */
  lockMs?: number;
  /** A line for the log (what started, finished, failed; Redis away and back). */
  log?: (line: string) => void;
}

const MAX_STALLS = 2;

export interface RunningWorker {
  /**
   * Finishes the unit in hand (its result delivered, waiting for Redis if need be), then stops. With
   * no unit in hand and Redis away it returns at once: a close would wait for replies that never come.
   */
  stop(): Promise<void>;
  /** Rejects when Redis refuses the credentials or its certificate does not verify (waiting would not help); never resolves. */
  refused: Promise<never>;
}

export function startWorker(options: WorkerOptions): RunningWorker {
  const log = options.log ?? (() => {});
  const lockMs = options.lockMs ?? 30_000;
  const worker = new Worker<UnitJob, UnitResult>(QUEUE_NAME, new URL('./unit-thread.js', import.meta.url), {
    connection: queueConnection(options.queue),
    concurrency: 1,
    useWorkerThreads: true,
    workerThreadsOptions: { workerData: { threads: options.threads } },
    lockDuration: lockMs,
    stalledInterval: lockMs,
    maxStalledCount: MAX_STALLS,
  });
  // the job's data as the coordinator wrote it (the thread checks it)
  const name = (data: UnitJob | undefined) => {
    if (!data?.task) return 'a unit';
    const { task, ...params } = data.task;
    return describeRow({ model: data.model, cache: data.cache, task: { name: String(task) }, params: params as TaskParams, settings: data.settings ?? {} });
  };
  let down = false;
  let busy = false;
  let refuse: (e: Error) => void = () => {};
  const refused = new Promise<never>((_, reject) => (refuse = reject));
  worker.on('error', (e) => {
    const fatal = refusal(e, options.queue);
    if (fatal) return refuse(fatal);
    if (down) return;
    down = true;
    log(`Redis unreachable (${e.message}); waiting for it`);
  });
  worker.once('ready', () => log('ready'));
  const back = () => {
    if (down) log('Redis is back');
    down = false;
  };
  worker.on('drained', back);
  worker.on('active', (job) => {
    back();
    busy = true;
    log(`start ${name(job.data)}`);
  });
  worker.on('completed', (job, result) => {
    busy = false;
    log(`done ${name(job.data)} in ${result.seconds.toFixed(1)}s`);
  });
  worker.on('failed', (job, e) => {
    busy = false;
    log(`failed ${name(job?.data)} (try ${job?.attemptsMade ?? '?'}): ${e.message}`);
  });
  const stop = async (): Promise<void> => {
    const closing = worker.close();
    let closed = false;
    void closing.then(() => (closed = true));
    while (!closed && (busy || !down)) await Promise.race([closing, new Promise((r) => setTimeout(r, 200))]);
  };
  return { stop, refused };
}
