import { UsageError } from '../errors.js';
import type { Model } from '../model.js';
import { checkEvalData, DATASETS, evalChunks, loadTokenDocuments, TOKEN_DATASETS } from './data.js';
import { fidelity } from './fidelity.js';
import { needle } from './needle.js';
import { passkey, type GridResult } from './passkey.js';
import { perplexity } from './ppl.js';
import { parseIntList } from './retrieval.js';
import { xsum } from './xsum.js';
import type { ParamValue, TaskParams } from './store.js';

/**
 * The tasks a sweep can run. A task declares its parameters (so a plan is checked before anything
 * runs and its rows get stable keys), how much work a row is (for the one progress bar), how to run
 * one row, and which of its metrics a report shows.
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
  /** The parameter `kvpack eval --limit N` sets (chunks, items, trials). */
  limit?: string;
}

/** Tokens a row scores over its chunks (undefined when a text set's chunk count is left open). */
function scoredTokens(p: TaskParams): number | undefined {
  const docs = loadTokenDocuments(p.data as string);
  if (docs) return evalChunks({ kind: 'documents', docs }, p.ctx as number, p.chunks as number | undefined).reduce((n, c) => n + c.length, 0);
  return p.chunks === undefined ? undefined : (p.chunks as number) * (p.ctx as number);
}

const ppl: Task = {
  name: 'ppl',
  doc: 'perplexity over ctx-token chunks of a text set, or over the stories of stories260k',
  params: {
    data: { type: { kind: 'string' }, doc: `${[...DATASETS, ...TOKEN_DATASETS].join(', ')} or a text file` },
    ctx: { type: { kind: 'int', min: 2 }, default: 2048, doc: 'tokens per chunk (stories260k: each story cut to this many)' },
    chunks: { type: { kind: 'int', min: 1 }, optional: true, doc: 'at most this many chunks (all when omitted)' },
    mode: { type: { kind: 'enum', values: ['chunked', 'decode'] }, default: 'chunked', doc: 'decode feeds one token at a time' },
    // optional, so rows stored before these existed keep their keys
    streaming: { type: { kind: 'enum', values: ['no', 'yes'] }, optional: true, doc: 'yes: chunks longer than the context, fixed-budget cache, rank positions' },
    window: { type: { kind: 'int', min: 1 }, optional: true, doc: 'also report perplexity per window of this many positions (metrics ppl_w0, ppl_w1, …)' },
  },
  usesSeed: false,
  units: scoredTokens,
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
      streaming: p.streaming === 'yes',
      windowSize: p.window as number | undefined,
      onProgress: context.onProgress,
    });
    const windows = Object.fromEntries((r.windows ?? []).map((v, w) => [`ppl_w${w}`, v]));
    return {
      metrics: { ppl: r.ppl, tokens: r.tokens, chunks: r.chunks, ...windows, ...r.policy_stats },
      kv_bytes_peak: r.kv_bytes_peak,
      kv_bytes_per_token: r.kv_bytes_per_token,
      bits_per_value: r.bits_per_value,
      compression: r.compression,
    };
  },
  columns: [{ metric: 'ppl', header: 'ppl', digits: 3, delta: true }],
  limit: 'chunks',
};

const fidelityTask: Task = {
  name: 'fidelity',
  doc: 'KL(full ‖ cache) of next-token distributions and top-1 agreement with the full cache on the same chunks',
  params: {
    data: { ...ppl.params.data!, default: 'wikitext2' },
    ctx: { type: { kind: 'int', min: 2 }, default: 1024, doc: 'tokens per chunk' },
    chunks: { type: { kind: 'int', min: 1 }, default: 1, doc: 'chunks compared' },
    mode: { type: { kind: 'enum', values: ['chunked', 'decode'] }, default: 'decode', doc: 'decode (default) feeds one token at a time, so eviction acts as in generation' },
  },
  usesSeed: false,
  units(p) {
    return 2 * scoredTokens(p)!; // the full cache's run, then the candidate's
  },
  check(p) {
    checkEvalData(p.data as string);
  },
  async run(model, cache, p, context) {
    const r = fidelity(model, {
      data: p.data as string,
      ctx: p.ctx as number,
      chunks: p.chunks as number,
      mode: p.mode as 'chunked' | 'decode',
      cache,
      onProgress: context.onProgress,
    });
    return {
      metrics: { kl: r.kl, kl_max: r.kl_max, top1: r.top1, ppl: r.ppl, ppl_full: r.ppl_full, tokens: r.tokens, chunks: r.chunks },
      kv_bytes_peak: r.kv_bytes_peak,
      kv_bytes_per_token: r.kv_bytes_per_token,
      bits_per_value: r.bits_per_value,
      compression: r.compression,
    };
  },
  columns: [
    { metric: 'kl', header: 'KL(full‖cache)', digits: 5 },
    { metric: 'top1', header: 'top-1 agree', digits: 4 },
    { metric: 'ppl', header: 'ppl', digits: 3, delta: true },
  ],
  limit: 'chunks',
};

const xsumTask: Task = {
  name: 'xsum',
  doc: 'XSum summaries in the H2O/Q-Hitter setup (per-item sampling and stop), ROUGE-1/2/L F1',
  params: {
    items: { type: { kind: 'int', min: 1, max: 1000 }, default: 20, doc: 'summaries generated (the first that fit the context)' },
    stemmer: { type: { kind: 'enum', values: ['porter', 'none'] }, default: 'porter', doc: 'rouge-score use_stemmer' },
  },
  usesSeed: true,
  units: () => undefined,
  async run(model, cache, p, context) {
    const r = await xsum(model, { cache, items: p.items as number, seed: context.seed, stemmer: p.stemmer === 'porter', onProgress: context.onProgress });
    return {
      metrics: { rouge1: r.rouge1, rouge2: r.rouge2, rougeL: r.rougeL, items: r.items, skipped: r.skipped },
      kv_bytes_peak: r.kv_bytes_peak,
      kv_bytes_per_token: r.kv_bytes_per_token,
      bits_per_value: r.bits_per_value,
      compression: r.compression,
    };
  },
  columns: [
    { metric: 'rouge1', header: 'ROUGE-1', digits: 4, delta: true },
    { metric: 'rouge2', header: 'ROUGE-2', digits: 4 },
    { metric: 'rougeL', header: 'ROUGE-L', digits: 4 },
  ],
  limit: 'items',
};

const gridParams = (lengths: string): Record<string, TaskParamSchema> => ({
  lengths: { type: { kind: 'string' }, default: lengths, doc: 'prompt lengths in tokens, comma-separated' },
  depths: { type: { kind: 'string' }, default: '0,25,50,75,100', doc: 'depths in percent, comma-separated' },
  trials: { type: { kind: 'int', min: 1 }, default: 2, doc: 'prompts per (length, depth) cell' },
});

function gridTask(name: 'passkey' | 'needle', doc: string, runGrid: typeof passkey): Task {
  return {
    name,
    doc,
    params: gridParams(name === 'passkey' ? '256,512,1024,1900' : '512,1024,1900'),
    usesSeed: true,
    units: (p) => gridLengths(p).reduce((n, l) => n + l, 0) * gridDepths(p).length * (p.trials as number),
    check(p) {
      gridLengths(p);
      gridDepths(p);
    },
    async run(model, cache, p, context) {
      const r: GridResult = await runGrid(model, {
        cache,
        lengths: gridLengths(p),
        depths: gridDepths(p),
        trials: p.trials as number,
        seed: context.seed,
        onProgress: context.onProgress,
      });
      return {
        metrics: { accuracy: r.accuracy, ...r.cells, trials: r.trials },
        kv_bytes_peak: r.kv_bytes_peak,
        kv_bytes_per_token: r.kv_bytes_per_token,
        bits_per_value: r.bits_per_value,
        compression: r.compression,
      };
    },
    columns: [{ metric: 'accuracy', header: 'accuracy', digits: 3 }],
    limit: 'trials',
  };
}

function gridLengths(p: TaskParams): number[] {
  return parseIntList(p.lengths as string, 'lengths', 16);
}

function gridDepths(p: TaskParams): number[] {
  return parseIntList(p.depths as string, 'depths', 0, 100);
}

const passkeyTask = gridTask('passkey', 'landmark-attention passkey retrieval over (length, depth); first integer of the greedy answer = key', passkey);
const needleTask = gridTask('needle', 'a magic-number needle at depth d% of Paul Graham essays of length L; greedy answer contains the number', needle);

export const TASKS = new Map<string, Task>([ppl, fidelityTask, xsumTask, passkeyTask, needleTask].map((t) => [t.name, t]));

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
