import { UsageError } from '../errors.js';
import type { Model } from '../engine/model.js';
import { applyDefaults, findIssue, int, oneOf, text, type Infer, type Param, type ParamValue } from '../util/schema.js';
import { copyNll } from './copy.js';
import { checkEvalData, DATASETS, evalChunks, loadTokenDocuments, TOKEN_DATASETS } from './data.js';
import { fidelity } from './fidelity.js';
import { multikey } from './multikey.js';
import { needle } from './needle.js';
import { passkey, type GridOptions, type GridResult } from './passkey.js';
import { perplexity, type PerplexityOptions } from './ppl.js';
import { parseIntList } from './retrieval.js';
import { xsum } from './xsum.js';
import type { CacheMemory } from './memory.js';

/**
 * The tasks a sweep can run. A task declares its parameters (so a plan is checked before anything
 * runs and its rows get stable keys), how much work a row is (for the one progress bar), how to run
 * one row, and which of its metrics a report shows.
 */

/** A task's parameters: values a plan row can store and key on. */
export type TaskSchema = Record<string, Param<ParamValue>>;

/** What one row produces: the task's own numbers and what its cache held. */
export interface TaskOutput {
  metrics: Record<string, number>;
  memory: CacheMemory;
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

export interface Task<P extends TaskSchema = TaskSchema> {
  name: string;
  doc: string;
  params: P;
  /** Whether rows depend on the seed (then the seed is part of the row key). */
  usesSeed: boolean;
  /** Units of work a row takes (ppl: tokens scored); undefined when only running it can tell. */
  units(params: Infer<P>): number | undefined;
  /** Checks that need no model (data exists…); throws a UsageError. */
  check?(params: Infer<P>): void;
  run(model: Model, cache: string, params: Infer<P>, context: TaskContext): Promise<TaskOutput>;
  columns: readonly MetricColumn[];
  /** The parameter `kvpack eval --limit N` sets (chunks, items, trials). */
  limit?: keyof P & string;
}

/** Declares a task, its parameters' types inferred from its schema. */
function task<P extends TaskSchema>(t: Task<P>): Task<P> {
  return t;
}

/** Tokens a row scores over its chunks (undefined when a text set's chunk count is left open). */
function scoredTokens(p: { data: string; ctx?: number; chunks?: number }): number | undefined {
  const docs = loadTokenDocuments(p.data);
  if (docs) return evalChunks({ kind: 'documents', docs }, p.ctx ?? Infinity, p.chunks).reduce((n, c) => n + c.length, 0);
  return p.chunks === undefined || p.ctx === undefined ? undefined : p.chunks * p.ctx;
}

const DATA_DOC = `${[...DATASETS, ...TOKEN_DATASETS].join(', ')} or a text file`;
const MODES = ['chunked', 'decode'] as const;

/** The ppl task's parameters; `kvpack ppl` reads its options through them too. */
export const PPL_PARAMS = {
  data: text({ default: 'wikitext2', doc: DATA_DOC }), // as fidelity's
  ctx: int({ min: 2, optional: true, doc: "tokens per chunk (default: the model's context; stories260k: each story cut to this many, default its longest)" }),
  chunks: int({ min: 1, optional: true, doc: 'at most this many chunks (all when omitted)' }),
  mode: oneOf(MODES, { default: 'chunked', doc: 'decode feeds one token at a time' }),
  // optional, so rows stored before these existed keep their keys
  streaming: oneOf(['no', 'yes'], { optional: true, doc: 'yes: chunks longer than the context, fixed-budget cache, rank positions' }),
  window: int({ min: 1, optional: true, doc: 'also report perplexity per window of this many positions (metrics ppl_w0, ppl_w1, …)' }),
};

/** The perplexity options of a ppl task row. */
export function pplOptions(p: Infer<typeof PPL_PARAMS>, cache: string, onProgress?: (done: number, total: number) => void): PerplexityOptions {
  return { data: p.data, ctx: p.ctx, chunks: p.chunks, mode: p.mode, cache, streaming: p.streaming === 'yes', windowSize: p.window, onProgress };
}

export const pplTask = task({
  name: 'ppl',
  doc: 'perplexity over ctx-token chunks of a text set, or over the stories of stories260k',
  params: PPL_PARAMS,
  usesSeed: false,
  units: scoredTokens,
  check(p) {
    checkEvalData(p.data);
  },
  async run(model, cache, p, context) {
    const r = perplexity(model, pplOptions(p, cache, context.onProgress));
    const windows = Object.fromEntries((r.windows ?? []).map((v, w) => [`ppl_w${w}`, v]));
    return { metrics: { ppl: r.ppl, tokens: r.tokens, chunks: r.chunks, ...windows, ...r.policy_stats }, memory: r.memory };
  },
  columns: [{ metric: 'ppl', header: 'ppl', digits: 3, delta: true }],
  limit: 'chunks',
});

const fidelityTask = task({
  name: 'fidelity',
  doc: 'KL(full+fp32 ‖ cache) of next-token distributions and top-1 agreement with the exact full cache on the same chunks',
  params: {
    data: text({ default: 'wikitext2', doc: DATA_DOC }),
    ctx: int({ min: 2, optional: true, doc: "tokens per chunk (default: the model's context; a token set: its longest document)" }),
    chunks: int({ min: 1, default: 1, doc: 'chunks compared' }),
    mode: oneOf(MODES, { default: 'decode', doc: 'decode (default) feeds one token at a time, so eviction acts as in generation' }),
  },
  usesSeed: false,
  units(p) {
    const n = scoredTokens(p);
    return n === undefined ? undefined : 2 * n; // the full cache's run, then the candidate's
  },
  check(p) {
    checkEvalData(p.data);
  },
  async run(model, cache, p, context) {
    const r = fidelity(model, { ...p, cache, onProgress: context.onProgress });
    return {
      metrics: { kl: r.kl, kl_max: r.kl_max, top1: r.top1, ppl: r.ppl, ppl_full: r.ppl_full, tokens: r.tokens, chunks: r.chunks },
      memory: r.memory,
    };
  },
  columns: [
    { metric: 'kl', header: 'KL(full+fp32‖cache)', digits: 5 },
    { metric: 'top1', header: 'top-1 agree', digits: 4 },
    { metric: 'ppl', header: 'ppl', digits: 3, delta: true },
  ],
  limit: 'chunks',
});

const xsumTask = task({
  name: 'xsum',
  doc: 'XSum summaries in the H2O/Q-Hitter setup (per-item sampling and stop), ROUGE-1/2/L F1',
  params: {
    items: int({ min: 1, max: 1000, default: 20, doc: 'summaries generated (the first that fit the context)' }),
    stemmer: oneOf(['porter', 'none'], { default: 'porter', doc: 'rouge-score use_stemmer' }),
  },
  usesSeed: true,
  units: () => undefined,
  async run(model, cache, p, context) {
    const r = await xsum(model, { cache, items: p.items, seed: context.seed, stemmer: p.stemmer === 'porter', onProgress: context.onProgress });
    return { metrics: { rouge1: r.rouge1, rouge2: r.rouge2, rougeL: r.rougeL, items: r.items, skipped: r.skipped }, memory: r.memory };
  },
  columns: [
    { metric: 'rouge1', header: 'ROUGE-1', digits: 4, delta: true },
    { metric: 'rouge2', header: 'ROUGE-2', digits: 4 },
    { metric: 'rougeL', header: 'ROUGE-L', digits: 4 },
  ],
  limit: 'items',
});

const copyTask = task({
  name: 'copy',
  doc: 'NLL per token of a repeated span (text, span, text, span) on its second occurrence over its first (ratio; < 1 = copies)',
  params: {
    data: text({ default: 'wikitext2', doc: DATA_DOC }),
    span: int({ min: 2, default: 64, doc: 'tokens in the repeated span' }),
    gap: int({ min: 0, default: 256, doc: 'tokens of text before each occurrence' }),
    items: int({ min: 1, default: 20, doc: 'items (each 2 × (gap + span) tokens) averaged' }),
    mode: oneOf(MODES, { default: 'chunked', doc: 'decode feeds one token at a time' }),
  },
  usesSeed: false,
  units: (p) => p.items * 2 * (p.gap + p.span),
  check(p) {
    checkEvalData(p.data);
  },
  async run(model, cache, p, context) {
    const r = copyNll(model, { ...p, cache, onProgress: context.onProgress });
    return { metrics: { ratio: r.ratio, nll_first: r.nll_first, nll_second: r.nll_second, items: r.items }, memory: r.memory };
  },
  columns: [
    { metric: 'ratio', header: 'NLL 2nd/1st', digits: 4, delta: true },
    { metric: 'nll_second', header: 'NLL 2nd', digits: 4 },
    { metric: 'nll_first', header: 'NLL 1st', digits: 4 },
  ],
  limit: 'items',
});

// lengths and depths stay text in rows (their keys), and are read as lists when used
const gridParams = (lengths: string) => ({
  lengths: text({ default: lengths, doc: 'prompt lengths in tokens, comma-separated' }),
  depths: text({ default: '0,25,50,75,100', doc: 'depths in percent, comma-separated' }),
  trials: int({ min: 1, default: 2, doc: 'prompts per (length, depth) cell' }),
});
type GridParams = Infer<ReturnType<typeof gridParams>>;

function gridTask(name: 'passkey' | 'needle', doc: string, lengths: string, runGrid: (model: Model, o: GridOptions) => Promise<GridResult>) {
  return task({
    name,
    doc,
    params: gridParams(lengths),
    usesSeed: true,
    units: gridUnits,
    check: checkGrid,
    run: (model, cache, p, context) => runGridTask(p, cache, context, (o) => runGrid(model, o)),
    columns: GRID_COLUMNS,
    limit: 'trials',
  });
}

const gridUnits = (p: GridParams): number => gridLengths(p).reduce((n, l) => n + l, 0) * gridDepths(p).length * p.trials;
const GRID_COLUMNS = [{ metric: 'accuracy', header: 'accuracy', digits: 3 }];

function checkGrid(p: GridParams): void {
  gridLengths(p);
  gridDepths(p);
}

async function runGridTask(p: GridParams, cache: string, context: TaskContext, run: (o: GridOptions) => Promise<GridResult>): Promise<TaskOutput> {
  const r = await run({ cache, lengths: gridLengths(p), depths: gridDepths(p), trials: p.trials, seed: context.seed, onProgress: context.onProgress });
  return { metrics: { accuracy: r.accuracy, ...r.cells, trials: r.trials }, memory: r.memory };
}

function gridLengths(p: GridParams): number[] {
  return parseIntList(p.lengths, 'lengths', 16);
}

function gridDepths(p: GridParams): number[] {
  return parseIntList(p.depths, 'depths', 0, 100);
}

const passkeyTask = gridTask('passkey', 'landmark-attention passkey retrieval over (length, depth); first integer of the greedy answer = key', '256,512,1024,1900', passkey);
const needleTask = gridTask('needle', 'a magic-number needle at depth d% of Paul Graham essays of length L; greedy answer contains the number', '512,1024,1900', needle);
const multikeyTask = task({
  name: 'multikey',
  doc: 'RULER-style multi-key recall: "key: value" lines in the essays, the asked one at depth d%; greedy answer contains its value',
  params: { ...gridParams('512,1024,1900'), pairs: int({ min: 1, max: 256, default: 8, doc: 'key-value pairs per prompt (one asked)' }) },
  usesSeed: true,
  units: gridUnits,
  check: checkGrid,
  run: (model, cache, p, context) => runGridTask(p, cache, context, (o) => multikey(model, { ...o, pairs: p.pairs })),
  columns: GRID_COLUMNS,
  limit: 'trials',
});

export const TASKS = new Map<string, Task>([pplTask, fidelityTask, xsumTask, passkeyTask, needleTask, multikeyTask, copyTask].map((t) => [t.name, t]));

/** How messages name where a task entry came from and its parameters (a plan: `p.json: tasks[0]: `, `ctx`; the command line: ``, `--ctx`). */
export interface EntryNames {
  where: string;
  param: (key: string) => string;
}

/**
 * A task entry (`{ "task": "ppl", "data": "wikitext2", … }` from a plan, or the command line's
 * options) → the task and its parameters with defaults filled in, checked before anything runs.
 * `at` names the entry in messages (a string: a plan's entry, whose parameters go by their keys).
 */
export function resolveTask(entry: unknown, at: string | EntryNames): { task: Task; params: Infer<TaskSchema> } {
  const names = typeof at === 'string' ? { where: `${at}: `, param: (key: string) => key } : at;
  const { where } = names;
  if (!entry || typeof entry !== 'object' || Array.isArray(entry)) throw new UsageError(`${where}expected an object like { "task": "ppl", … }`);
  const { task: name, ...given } = entry as Record<string, unknown>;
  const task = typeof name === 'string' ? TASKS.get(name) : undefined;
  if (!task) throw new UsageError(`${where}unknown task ${JSON.stringify(name)}; tasks: ${[...TASKS.keys()].join(', ')}`);
  return { task, params: taskParams(task, given, names) };
}

/** A task's parameters checked (the task's own checks included) and with defaults filled in. */
export function taskParams<P extends TaskSchema>(task: Task<P>, given: Record<string, unknown>, names: EntryNames): Infer<P> {
  const { where } = names;
  const issue = findIssue(task.params, given);
  if (issue?.kind === 'unknown') throw new UsageError(`${where}task ${task.name} has no parameter "${issue.key}"; it takes ${Object.keys(task.params).join(', ')}`);
  if (issue?.kind === 'missing') throw new UsageError(`${where}${task.name} needs ${names.param(issue.key)} (${issue.doc})`);
  if (issue?.kind === 'invalid') throw new UsageError(`${where}${task.name} ${names.param(issue.key)} ${issue.problem}, got ${JSON.stringify(issue.value)}`);
  const params = applyDefaults(task.params, given);
  try {
    task.check?.(params);
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(`${where}${e.message}`);
    throw e;
  }
  return params;
}
