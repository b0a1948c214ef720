import { workerData } from 'node:worker_threads';
import { UnrecoverableError, type SandboxedJob } from 'bullmq';
import { KvpackError } from '../errors.js';
import { resolveModel } from '../hub/download.js';
import { loadModel, type Model } from '../engine/model.js';
import { modelFingerprint } from './fingerprint.js';
import { JobError, readJob, type UnitJob } from './queue.js';
import type { UnitResult } from './store.js';
import { runUnit, type ModelSettings } from './sweep.js';

/**
 * A worker's unit runner: BullMQ's sandboxed processor, run in a worker thread of `kvpack worker`.
 * A unit computes for long stretches without yielding; here that blocks only this thread, so the
 * worker's main thread keeps renewing the job's lock (its heartbeat) and a live worker is never
 * taken for a dead one. The thread lives as long as the worker and keeps the last model loaded,
 * so the units of one model (enqueued together) load it once.
 */

const { threads } = workerData as { threads: number };
const PROGRESS_MS = 1000;

let held: { model: string; path: string; fingerprint: string; settings: string; loaded: Model } | undefined;

export default async function processUnit(job: SandboxedJob<unknown, UnitResult>): Promise<UnitResult> {
  let checked: ReturnType<typeof readJob>;
  try {
    checked = readJob(job.data);
  } catch (e) {
    if (e instanceof JobError) throw new UnrecoverableError(e.message); // no worker could run it: not retried
    throw e;
  }
  const model = await modelFor(checked.job, checked.unit.settings);
  let last = 0;
  return runUnit(model, checked.unit, (done, total) => {
    const now = performance.now();
    if (done < total && now - last < PROGRESS_MS) return;
    last = now;
    job.updateProgress({ done, total }).catch(() => {}); // progress is a display: a lost update is harmless
  });
}

/** The job's model with its settings, loaded once for consecutive units; refused when this worker's copy is not the plan's. */
async function modelFor(job: UnitJob, settings: ModelSettings): Promise<Model> {
  const settingsKey = JSON.stringify(settings);
  if (held?.model === job.model && held.fingerprint === job.fingerprint && held.settings === settingsKey) return held.loaded;
  let path: string;
  let fingerprint: string;
  try {
    path = await resolveModel(job.model);
    fingerprint = modelFingerprint(path);
  } catch (e) {
    if (e instanceof KvpackError) throw new Error(`${job.model}: not available on this worker (${e.message})`);
    throw e;
  }
  if (fingerprint !== job.fingerprint) {
    throw new Error(`${job.model} on this worker has fingerprint ${fingerprint.slice(0, 16)}, the plan's has ${job.fingerprint.slice(0, 16)}: a different model; unit refused`);
  }
  if (held) await held.loaded.close();
  held = undefined;
  held = { model: job.model, path, fingerprint, settings: settingsKey, loaded: await loadModel(path, { threads, ...settings }) };
  return held.loaded;
}
