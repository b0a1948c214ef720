import { KvpackError, UsageError } from '../errors.js';
import { parseSpec, printSpec } from '../cache/registry.js';
import { findIssue, int, param, text } from '../util/schema.js';
import { SEED_RANGE } from '../util/random.js';
import { ATTENTION_MODES } from '../cache/codec.js';
import { MATMUL_MODES } from '../kernels/index.js';
import type { UnitResult } from './store.js';
import { unitKey, type ModelSettings, type PlannedRow, type Unit } from './sweep.js';
import { resolveTask } from './tasks.js';

/**
 * What the coordinator (`kvpack sweep --queue`) and the workers (`kvpack worker`) share: the queue's
 * name, how a Redis URL becomes a connection, and the job a unit travels as. A job is plain JSON
 * that a worker checks before anything runs, so the queue can only ask a worker for kvpack units.
 */

/** The one BullMQ queue every sweep and worker on a Redis uses (a job's id is its row's store key). */
export const QUEUE_NAME = 'kvpack-units';

/** A unit as the queue carries it. */
export interface UnitJob {
  /** The store key of its row: the job's identity, checked by the worker against the rest. */
  key: string;
  /** As the plan names it: a path (read from the worker's working directory) or a Hugging Face repo id. */
  model: string;
  /** The plan's model fingerprint; a worker whose copy differs refuses the unit. */
  fingerprint: string;
  cache: string;
  /** The task entry: `{ "task": "ppl", …params }`, defaults filled in. */
  task: Record<string, unknown>;
  seed: number;
  /** How the worker loads the model: the plan's settings (absent: the defaults). */
  settings?: ModelSettings;
}

/** The ioredis connection options of a redis:// or rediss:// (TLS) URL; user, password and database number are honoured. */
export function queueConnection(url: string): { url: string; retryStrategy: (times: number) => number } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--queue must be a Redis URL such as redis://127.0.0.1:6379 or rediss://:PASSWORD@HOST:6380, got "${describeQueue(url)}"`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new UsageError(`--queue must be a redis:// or rediss:// URL, got "${describeQueue(url)}"`);
  }
  // Reconnect every ≤ 5 s for as long as it takes: a restarted Redis finds the sweep still waiting.
  return { url, retryStrategy: (times) => Math.min(500 * times, 5000) };
}

/** The URL without its password, for messages (even one that does not parse). */
export function describeQueue(url: string): string {
  return url.replace(/^([^/]*\/\/[^@/]*?:)[^@/]*@/, '$1***@');
}

/** BullMQ keeps ':' for itself in job ids; the key's '%' and ':' are escaped so every key maps to one id. */
export function jobId(key: string): string {
  return key.replace(/%/g, '%25').replace(/:/g, '%3A');
}

/** A planned row (key and fingerprint known) as a job. */
export function toJob(row: PlannedRow): UnitJob {
  return { key: row.key!, model: row.model, fingerprint: row.fingerprint!, cache: row.cache, task: { task: row.task.name, ...row.params }, seed: row.seed, ...(Object.keys(row.settings).length > 0 && { settings: row.settings }) };
}

const JOB_PARAMS = {
  key: text({ doc: 'the store key' }),
  model: text({ doc: 'a model path or repo id' }),
  fingerprint: param<string>((v) => (typeof v === 'string' && /^[0-9a-f]{64}$/.test(v) ? undefined : 'must be a sha256 in hex'), { doc: 'the model fingerprint' }),
  cache: text({ doc: 'a cache spec' }),
  task: param<Record<string, unknown>>((v) => (v && typeof v === 'object' && !Array.isArray(v) ? undefined : 'must be a task entry { "task": … }'), { doc: 'the task entry' }),
  seed: int({ ...SEED_RANGE, doc: 'the seed' }),
  settings: param<ModelSettings>((v) => (isSettings(v) ? undefined : `must hold only attention (${ATTENTION_MODES.join(', ')}) and matmul (${MATMUL_MODES.join(', ')})`), { optional: true, doc: 'the model settings' }),
};

function isSettings(v: unknown): v is ModelSettings {
  if (!v || typeof v !== 'object' || Array.isArray(v)) return false;
  return Object.entries(v).every(([k, x]) => (k === 'attention' && ATTENTION_MODES.includes(x)) || (k === 'matmul' && MATMUL_MODES.includes(x)));
}

/** A unit job that is not one (another program's job, a hand edit): refused, never run. */
export class JobError extends KvpackError {
  override readonly name = 'JobError';
}

/**
 * A job's data checked as a unit: its fields, its cache spec (canonical), its task and parameters,
 * and its key against all of them, so a worker runs exactly the row the key names.
 */
export function readJob(data: unknown): { job: UnitJob; unit: Unit } {
  if (!data || typeof data !== 'object' || Array.isArray(data)) throw new JobError('job data is not an object');
  const issue = findIssue(JOB_PARAMS, data as Record<string, unknown>);
  if (issue?.kind === 'unknown') throw new JobError(`job data has an unknown field "${issue.key}"`);
  if (issue?.kind === 'missing') throw new JobError(`job data lacks "${issue.key}" (${issue.doc})`);
  if (issue?.kind === 'invalid') throw new JobError(`job data's "${issue.key}" ${issue.problem}`);
  const job = data as UnitJob;
  let cache: string;
  let resolved: ReturnType<typeof resolveTask>;
  try {
    cache = printSpec(parseSpec(job.cache));
    resolved = resolveTask(job.task, 'job');
  } catch (e) {
    if (e instanceof UsageError) throw new JobError(`job ${job.key}: ${e.message}`);
    throw e;
  }
  const unit: Unit = { cache, task: resolved.task, params: resolved.params, seed: job.seed, settings: job.settings ?? {} };
  if (unitKey(job.fingerprint, unit) !== job.key) throw new JobError(`job ${job.key}: its key does not match its model, cache, task, parameters and settings`);
  return { job, unit };
}

/** A worker's return value checked before it becomes a row of the store. */
export function readResult(value: unknown): UnitResult | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const r = value as Partial<UnitResult>;
  const numbers = (o: unknown) => !!o && typeof o === 'object' && Object.values(o).every((x) => typeof x === 'number');
  if (!numbers(r.metrics) || !numbers(r.memory) || typeof r.seconds !== 'number' || typeof r.finished_at !== 'string') return undefined;
  if (!r.versions || typeof r.versions.kvpack !== 'string' || typeof r.versions.node !== 'string') return undefined;
  return { metrics: r.metrics!, memory: r.memory!, seconds: r.seconds, versions: { kvpack: r.versions.kvpack, node: r.versions.node }, finished_at: r.finished_at };
}

/** Redis refused us (credentials), or we refused it (its TLS certificate): waiting would not help. */
export class QueueRefusedError extends KvpackError {
  override readonly name = 'QueueRefusedError';
}

/** The error as a QueueRefusedError when it is a refused password or user, or a TLS certificate that does not verify. */
export function refusal(e: unknown, url: string): QueueRefusedError | undefined {
  const err = e as { message?: unknown; code?: unknown };
  const message = String(err?.message ?? e).trim();
  const where = `Redis at ${describeQueue(url)}`;
  if (/WRONGPASS|NOAUTH|invalid password|invalid username/i.test(message)) {
    return new QueueRefusedError(`${where} refused the credentials (${message}); give the password in the URL: redis://:PASSWORD@HOST:PORT`);
  }
  if (/certificate/i.test(message) || /^(ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/.test(String(err?.code ?? ''))) {
    return new QueueRefusedError(`${where}: its TLS certificate does not verify (${message}); if it is signed by your own CA, trust it with NODE_EXTRA_CA_CERTS=ca.pem`);
  }
  return undefined;
}

/** Errors that mean Redis is away (down, restarting, loading its data), not that something is wrong with the sweep. */
export function isConnectionError(e: unknown): boolean {
  const err = e as { name?: unknown; message?: unknown; code?: unknown };
  if (err?.name === 'MaxRetriesPerRequestError') return true;
  return /Connection is closed|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EHOSTUNREACH|Stream isn't writeable|LOADING/i.test(String(err?.message ?? err?.code ?? ''));
}
