import { UsageError } from '../errors.js';
import type { Model } from '../model/model.js';
import { checkEvalData, DATASETS, evalChunks, loadTokenDocuments, TOKEN_DATASETS } from './data.js';
import { perplexity } from './ppl.js';
import type { ParamValue, TaskParams } from './store.js';

/**
 * The tasks a sweep can run. A task declares its parameters (so a plan is checked before anything
 * runs and its rows get stable keys), how much work a row is (for the one progress bar), how to run
 * one row, and which of its metrics a report shows. Later tasks (fidelity, xsum, passkey, needle)
 * are one more entry in TASKS.
 */

export type TaskParamType =
  | { kind: 'int'; min: number; max?: number }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'string' };

export interface TaskParamSchema {
  type: TaskParamType;
  /** Omitted (and not `optional`): the parameter is required. */
  default?: ParamValue;
  /** May be left out with no default; the task decides what that means (and the key leaves it out). */
  optional?: true;
  doc: string;
}

/** What one row produces: the task's own numbers and the cache's memory, which every task reports. */
export interface TaskOutput {
  metrics: Record<string, number>;
  kv_bytes_peak: number;
  kv_bytes_per_token: number;
  bits_per_value: number;
  compression: number;
}

export interface TaskContext {
  /** The plan's seed, for tasks that sample. */
  seed: number;
  /** Units done so far within this row and the row's total (the same units as `units`). */
  onProgress?: (done: number, total: number) => void;
}

/** A metric as a report shows it. */
export interface MetricColumn {
  metric: string;
  header: string;
  digits: number;
  /** Also show the change against the full cache's row, in percent. */
  delta?: boolean;
}

export interface Task {
  name: string;
  doc: string;
  params: Record<string, TaskParamSchema>;
  /** Whether rows depend on the seed (then the seed is part of the row key). */
  usesSeed: boolean;
  /** Units of work a row takes (ppl: tokens scored); undefined when only running it can tell. */
  units(params: TaskParams): number | undefined;
  /** Checks that need no model (data exists…); throws a UsageError. */
  check?(params: TaskParams): void;
  run(model: Model, cache: string, params: TaskParams, context: TaskContext): Promise<TaskOutput>;
  columns: readonly MetricColumn[];
}

const ppl: Task = {
  name: 'ppl',
  doc: 'perplexity over ctx-token chunks of a text set, or over the stories of stories260k',
  params: {
    data: { type: { kind: 'string' }, doc: `${[...DATASETS, ...TOKEN_DATASETS].join(', ')} or a text file` },
    ctx: { type: { kind: 'int', min: 2 }, default: 2048, doc: 'tokens per chunk (stories260k: each story cut to this many)' },
    chunks: { type: { kind: 'int', min: 1 }, optional: true, doc: 'at most this many chunks (all when omitted)' },
    mode: { type: { kind: 'enum', values: ['chunked', 'decode'] }, default: 'chunked', doc: 'decode feeds one token at a time' },
  },
  usesSeed: false,
  units(p) {
    const docs = loadTokenDocuments(p.data as string);
    if (docs) return evalChunks({ kind: 'documents', docs }, p.ctx as number, p.chunks as number | undefined).reduce((n, c) => n + c.length, 0);
    return p.chunks === undefined ? undefined : (p.chunks as number) * (p.ctx as number);
  },
  check(p) {
    checkEvalData(p.data as string);
  },
  async run(model, cache, p, context) {
    const r = perplexity(model, {
      data: p.data as string,
      ctx: p.ctx as number,
      chunks: p.chunks as number | undefined,
      mode: p.mode as 'chunked' | 'decode',
      cache,
      onProgress: context.onProgress,
    });
    return {
      metrics: { ppl: r.ppl, tokens: r.tokens, chunks: r.chunks },
      kv_bytes_peak: r.kv_bytes_peak,
      kv_bytes_per_token: r.kv_bytes_per_token,
      bits_per_value: r.bits_per_value,
      compression: r.compression,
    };
  },
  columns: [{ metric: 'ppl', header: 'ppl', digits: 3, delta: true }],
};

export const TASKS = new Map<string, Task>([ppl].map((t) => [t.name, t]));

/**
 * A plan's task entry (`{ "task": "ppl", "data": "wikitext2", … }`) → the task and its parameters
 * with defaults filled in. `where` names the entry in messages.
 */
export function resolveTask(entry: unknown, where: string): { task: Task; params: TaskParams } {
  if (!entry || typeof entry !== 'object' || Array.isArray(entry)) throw new UsageError(`${where}: expected an object like { "task": "ppl", … }`);
  const { task: name, ...given } = entry as Record<string, unknown>;
  const task = typeof name === 'string' ? TASKS.get(name) : undefined;
  if (!task) throw new UsageError(`${where}: unknown task ${JSON.stringify(name)}; tasks: ${[...TASKS.keys()].join(', ')}`);
  const params: TaskParams = {};
  for (const key of Object.keys(given)) {
    if (!(key in task.params)) {
      throw new UsageError(`${where}: task ${task.name} has no parameter "${key}"; it takes ${Object.keys(task.params).join(', ')}`);
    }
  }
  for (const [key, schema] of Object.entries(task.params)) {
    const value = given[key];
    if (value === undefined) {
      if (schema.default !== undefined) params[key] = schema.default;
      else if (!schema.optional) throw new UsageError(`${where}: task ${task.name} needs "${key}" (${schema.doc})`);
      continue;
    }
    params[key] = checkParam(value, schema.type, `${where}: ${task.name} ${key}`);
  }
  try {
    task.check?.(params);
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(`${where}: ${e.message}`);
    throw e;
  }
  return { task, params };
}

function checkParam(value: unknown, type: TaskParamType, what: string): ParamValue {
  switch (type.kind) {
    case 'int':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < type.min || (type.max !== undefined && value > type.max)) {
        throw new UsageError(`${what} must be an integer ≥ ${type.min}${type.max === undefined ? '' : ` and ≤ ${type.max}`}, got ${JSON.stringify(value)}`);
      }
      return value;
    case 'enum':
      if (typeof value !== 'string' || !type.values.includes(value)) {
        throw new UsageError(`${what} must be one of ${type.values.join(', ')}, got ${JSON.stringify(value)}`);
      }
      return value;
    case 'string':
      if (typeof value !== 'string' || value === '') throw new UsageError(`${what} must be a non-empty string, got ${JSON.stringify(value)}`);
      return value;
  }
}
