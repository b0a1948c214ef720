import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseSpec, printSpec } from '../cache/registry.js';
import { KvpackError, UsageError } from '../errors.js';
import { resolveModel } from '../hub/download.js';
import { loadModel, type Model } from '../engine/model.js';
import { ATTENTION_MODES, DEFAULT_ATTENTION, type AttentionMode } from '../cache/codec.js';
import { MATMUL_MODES, type MatmulMode } from '../kernels/index.js';
import { modelFingerprint } from './fingerprint.js';
import { ROW_FORMAT, rowKey, unitResult, type ResultRow, type ResultStore, type TaskParams, type UnitResult } from './store.js';
import { resolveTask, type Task } from './tasks.js';
import { applyDefaults, findIssue, int, oneOf, own, param, text } from '../util/schema.js';
import { SEED_RANGE } from '../util/random.js';

/**
 * A sweep: every (model × cache spec × task) of a plan, one row each, stored as it finishes so an
 * interrupted sweep resumes where it stopped. Paths in a plan file (models, store, data files) are
 * relative to the plan's folder, so a plan runs the same from any directory; without a "store" it
 * writes NAME.jsonl beside itself.
 */
export interface SweepPlan {
  name: string;
  /** Where results go unless the caller says otherwise. */
  store: string;
  models: readonly string[];
  /** Cache spec templates; `{var}` placeholders expand over `vars`. */
  caches: readonly string[];
  vars: Readonly<Record<string, readonly (string | number)[]>>;
  /** Task entries as written: `{ "task": "ppl", … }`. */
  tasks: readonly Record<string, unknown>[];
  seed: number;
  /** How the models run (load options that change the numbers): only those the plan sets apart from their defaults. */
  settings: ModelSettings;
  /** The plan file, for messages. */
  source: string;
}

/**
 * The load options of a sweep's models that change its numbers, each only when it differs from the
 * default: a row run with them has them in its key and its params, and rows of plans that leave them
 * out keep the keys they always had.
 */
export interface ModelSettings {
  attention?: AttentionMode;
  matmul?: MatmulMode;
}

const DEFAULT_MATMUL: MatmulMode = 'fast';

export interface PlannedRow {
  model: string;
  /** The local file or directory; undefined when a repo id is not downloaded (dry runs only). */
  modelPath: string | undefined;
  fingerprint: string | undefined;
  cache: string;
  task: Task;
  params: TaskParams;
  seed: number;
  settings: ModelSettings;
  key: string | undefined;
  /** Units of work (tokens for ppl); undefined when only running can tell. */
  units: number | undefined;
  /** Already in the store. */
  done: boolean;
}

export type SweepEvent =
  | { type: 'plan'; rows: readonly PlannedRow[]; total: number }
  | { type: 'skip'; row: PlannedRow; units: number }
  | { type: 'load'; model: string }
  | { type: 'start'; row: PlannedRow }
  /** `units` more done in the running row. */
  | { type: 'advance'; row: PlannedRow; units: number }
  /** A row turned out bigger or smaller than planned: the new total of the sweep. */
  | { type: 'total'; total: number }
  | { type: 'finish'; row: PlannedRow; result: ResultRow }
  | { type: 'fail'; row: PlannedRow; error: unknown };

export interface PlanOptions {
  store: ResultStore;
  /** A model name → a local path (default resolveModel, which downloads repo ids); undefined: not available. */
  resolve?: (model: string) => Promise<string | undefined>;
}

export interface SweepOptions extends PlanOptions {
  onProgress?: (event: SweepEvent) => void;
  /** Loads a model from its local path with the plan's settings (default: loadModel with every core). */
  load?: (modelPath: string, settings: ModelSettings) => Promise<Model>;
  threads?: number;
}

export interface SweepSummary {
  rows: number;
  ran: number;
  skipped: number;
  appended: ResultRow[];
}

/** A row that failed: the message names the row, so the user knows what to fix and that earlier rows are kept. */
export class SweepRowError extends KvpackError {
  override readonly name = 'SweepRowError';
}

const WORD = /^[\w.-]+$/;

const stringList = (doc: string) =>
  param<readonly string[]>((v) => (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && x !== '') ? undefined : 'must be a non-empty list of strings'), { doc });

/** A plan file's fields. */
const PLAN_PARAMS = {
  name: param<string>((v) => (typeof v === 'string' && WORD.test(v) ? undefined : 'must be a word (letters, digits, - _ .)'), { optional: true, doc: 'the plan file name' }),
  description: text({ optional: true, doc: 'what the plan measures' }),
  store: text({ optional: true, doc: 'results/NAME.jsonl' }),
  models: stringList('model paths or repo ids'),
  caches: stringList('cache spec templates'),
  vars: param<Readonly<Record<string, readonly (string | number)[]>>>(
    (v) => (v && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((l) => Array.isArray(l) && l.length > 0 && l.every((x) => typeof x === 'number' || typeof x === 'string'))
      ? undefined
      : 'must map names to non-empty lists of numbers or strings'),
    { default: {}, doc: 'values of the {placeholders}' },
  ),
  tasks: param<readonly Record<string, unknown>[]>((v) => (Array.isArray(v) && v.length > 0 ? undefined : 'must be a non-empty list'), { doc: 'task entries' }),
  seed: int({ ...SEED_RANGE, default: 0, doc: 'seed of the tasks that sample' }),
  attention: oneOf(ATTENTION_MODES, { default: DEFAULT_ATTENTION, doc: 'how packed KV caches compute attention (kvpack --attention)' }),
  matmul: oneOf(MATMUL_MODES, { default: DEFAULT_MATMUL, doc: 'how quantized weights meet the activations (kvpack --matmul)' }),
};

/** Reads a JSON plan file and checks it (every cache spec and task included) before anything runs. */
export function loadPlan(file: string): SweepPlan {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read the sweep plan ${file}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return parsePlan(value, file, path.dirname(file));
}

/** `value` checked as a plan; relative paths in it are taken from `base` (the plan file's folder), or the working directory. */
export function parsePlan(value: unknown, source = 'plan', base?: string): SweepPlan {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`${source}: a sweep plan is a JSON object`);
  const given = value as Record<string, unknown>;
  const issue = findIssue(PLAN_PARAMS, given);
  if (issue?.kind === 'unknown') throw new UsageError(`${source}: unknown field "${issue.key}"; a plan has ${Object.keys(PLAN_PARAMS).join(', ')}`);
  if (issue?.kind === 'missing') throw new UsageError(`${source}: "${issue.key}" is missing (${issue.doc})`);
  if (issue?.kind === 'invalid') throw new UsageError(`${source}: "${issue.key}" ${issue.problem}, got ${JSON.stringify(issue.value)}`);
  const o = applyDefaults(PLAN_PARAMS, given);
  const name = o.name ?? path.basename(source).replace(/\.json$/, '');
  if (!WORD.test(name)) throw new UsageError(`${source}: "name" must be a word (letters, digits, - _ .); name the plan file so, or give "name"`);
  const from = (p: string): string => (base === undefined ? p : fromPlan(base, p));
  const plan: SweepPlan = {
    name,
    store: o.store !== undefined ? from(o.store) : base !== undefined ? path.join(base, `${name}.jsonl`) : `results/${name}.jsonl`,
    models: o.models.map((m) => (base !== undefined && fs.existsSync(path.resolve(base, m)) ? from(m) : m)), // else a repo id
    caches: o.caches,
    vars: o.vars,
    tasks: o.tasks.map((t) => (base !== undefined && typeof t.data === 'string' && fs.existsSync(path.resolve(base, t.data)) ? { ...t, data: from(t.data) } : t)),
    seed: o.seed,
    settings: {
      ...(o.attention !== DEFAULT_ATTENTION && { attention: o.attention }),
      ...(o.matmul !== DEFAULT_MATMUL && { matmul: o.matmul }),
    },
    source,
  };
  // Fail fast: a typo in the last spec should not surface hours into a sweep.
  expandCaches(plan);
  plan.tasks.forEach((t, i) => resolveTask(t, `${source}: tasks[${i}]`));
  return plan;
}

/** More cache specs than a sweep could ever run: a plan past this is a mistake in its vars. */
export const MAX_CACHE_SPECS = 10_000;

/** A path written in a plan in `base`, as the working directory reaches it (relative when it can be, for readable rows). */
function fromPlan(base: string, p: string): string {
  if (path.isAbsolute(p)) return p;
  const relative = path.relative(process.cwd(), path.resolve(base, p));
  return relative === '' ? '.' : relative;
}

/**
 * The plan's cache specs, canonical and without repeats: each template once per combination of the
 * vars it names (a template with no placeholder appears once). The combinations are counted before
 * any is made, and a plan with more than MAX_CACHE_SPECS is refused. Every spec is parsed here.
 */
export function expandCaches(plan: Pick<SweepPlan, 'caches' | 'vars' | 'source'>): string[] {
  const templates = plan.caches.map((template, i) => {
    const names = [...new Set([...template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!))];
    const lists = names.map((n) => {
      const values = own(plan.vars, n);
      if (!values) throw new UsageError(`${plan.source}: caches[${i}] "${template}" uses {${n}}, which "vars" does not define`);
      return values;
    });
    return { template, i, names, lists, count: lists.reduce((n, l) => n * l.length, 1) };
  });
  const count = templates.reduce((n, t) => n + t.count, 0);
  if (count > MAX_CACHE_SPECS) {
    const each = templates.map((t) => `caches[${t.i}]: ${t.count}`).join(', ');
    throw new UsageError(`${plan.source}: the vars expand to ${count} cache specs (${each}); a plan may have at most ${MAX_CACHE_SPECS}`);
  }
  const out = new Set<string>();
  for (const { template, i, names, lists, count: combos } of templates) {
    // combination c in mixed radix, the first var varying slowest
    for (let c = 0; c < combos; c++) {
      const value = new Map<string, string | number>();
      for (let v = names.length - 1, rest = c; v >= 0; v--) {
        const list = lists[v]!;
        value.set(names[v]!, list[rest % list.length]!);
        rest = Math.floor(rest / list.length);
      }
      const text = template.replace(/\{(\w+)\}/g, (_, n: string) => String(value.get(n)));
      try {
        out.add(printSpec(parseSpec(text)));
      } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        const from = text === template ? '' : ` (from "${template}")`;
        throw new UsageError(`${plan.source}: caches[${i}] "${text}"${from}: ${e.message}`);
      }
    }
  }
  return [...out];
}

/** Every row of the plan in run order (model, then task, then cache), each marked done or not. */
export async function planSweep(plan: SweepPlan, options: PlanOptions): Promise<PlannedRow[]> {
  const caches = expandCaches(plan);
  const tasks = plan.tasks.map((t, i) => resolveTask(t, `${plan.source}: tasks[${i}]`));
  const resolve = options.resolve ?? ((m: string) => resolveModel(m));
  const rows: PlannedRow[] = [];
  const planned = new Set<string>(); // one row per key, even when two model names are the same files
  for (const model of plan.models) {
    const modelPath = await resolve(model);
    const fingerprint = modelPath === undefined ? undefined : modelFingerprint(modelPath);
    for (const { task, params } of tasks) {
      const units = task.units(params);
      for (const cache of caches) {
        const key = fingerprint === undefined ? undefined : unitKey(fingerprint, { cache, task, params, seed: plan.seed, settings: plan.settings });
        if (key !== undefined && planned.has(key)) continue;
        if (key !== undefined) planned.add(key);
        rows.push({ model, modelPath, fingerprint, cache, task, params, seed: plan.seed, settings: plan.settings, key, units, done: key !== undefined && options.store.has(key) });
      }
    }
  }
  return rows;
}

/** `model · cache · task k=v …`, how messages and listings name a row. */
export function describeRow(row: Pick<PlannedRow, 'model' | 'cache' | 'params'> & Partial<Pick<PlannedRow, 'settings'>> & { task: Pick<Task, 'name'> }): string {
  const params = Object.entries({ ...row.params, ...row.settings }).map(([k, v]) => `${k}=${v}`).join(' ');
  return `${row.model} · ${row.cache} · ${row.task.name} ${params}`;
}

/** One unit of a sweep: a cache spec × task × parameters, to run on a model loaded with `settings`. */
export type Unit = Pick<PlannedRow, 'cache' | 'task' | 'params' | 'seed' | 'settings'>;

/** A unit's store key on the model with this fingerprint: the seed counts for the tasks that sample, the settings when the plan set them. */
export function unitKey(fingerprint: string, unit: Unit): string {
  const keyParams = { ...unit.params, ...(unit.task.usesSeed && { seed: unit.seed }), ...unit.settings };
  return rowKey(fingerprint, unit.cache, unit.task.name, keyParams);
}

/**
 * Runs one unit on a loaded model: the one way a unit runs, locally and on a queue's workers, so
 * both give the same numbers. `onProgress` gets units done within the unit and its total.
 */
export async function runUnit(model: Model, unit: Unit, onProgress?: (done: number, total: number) => void): Promise<UnitResult> {
  const started = performance.now();
  const out = await unit.task.run(model, unit.cache, unit.params, { seed: unit.seed, onProgress });
  return unitResult(out, started);
}

/** What identifies a planned row's result (its key and fingerprint known). */
export function rowIdentity(row: PlannedRow): Pick<ResultRow, 'format' | 'key' | 'model' | 'model_fingerprint' | 'cache' | 'task' | 'params' | 'seed'> {
  return { format: ROW_FORMAT, key: row.key!, model: row.model, model_fingerprint: row.fingerprint!, cache: row.cache, task: row.task.name, params: { ...row.params, ...row.settings }, seed: row.seed };
}

/**
 * Runs the rows not yet in the store, appending each as it finishes. Models are loaded once, and
 * not at all when all their rows are done.
 */
export async function runSweep(plan: SweepPlan, options: SweepOptions): Promise<SweepSummary> {
  const release = options.store.lock();
  try {
    return await runLocked(plan, options);
  } finally {
    release();
  }
}

async function runLocked(plan: SweepPlan, options: SweepOptions): Promise<SweepSummary> {
  const rows = await planSweep(plan, options);
  const emit = options.onProgress ?? (() => {});
  let total = rows.reduce((n, r) => n + (r.units ?? 0), 0);
  emit({ type: 'plan', rows, total });
  for (const row of rows) if (row.done) emit({ type: 'skip', row, units: row.units ?? 0 });
  const threads = options.threads ?? os.availableParallelism();
  const load = options.load ?? ((p: string, settings: ModelSettings) => loadModel(p, { threads, ...settings }));
  const appended: ResultRow[] = [];

  for (const modelName of plan.models) {
    const todo = rows.filter((r) => r.model === modelName && !r.done);
    if (todo.length === 0) continue;
    const modelPath = todo[0]!.modelPath;
    if (modelPath === undefined) throw new UsageError(`${modelName}: not available locally`);
    emit({ type: 'load', model: modelName });
    const model = await load(modelPath, plan.settings);
    try {
      for (const row of todo) {
        // Another sweep on the same store may have finished it meanwhile (the store is re-read only at open).
        if (options.store.has(row.key!)) {
          emit({ type: 'skip', row, units: row.units ?? 0 });
          continue;
        }
        emit({ type: 'start', row });
        let reported = 0;
        let actual = row.units;
        let measured: UnitResult;
        try {
          measured = await runUnit(model, row, (done, rowTotal) => {
            if (rowTotal !== actual) {
              total += rowTotal - (actual ?? 0);
              actual = rowTotal;
              emit({ type: 'total', total });
            }
            if (done > reported) emit({ type: 'advance', row, units: done - reported });
            reported = Math.max(reported, done);
          });
        } catch (e) {
          emit({ type: 'fail', row, error: e });
          if (e instanceof KvpackError) throw new SweepRowError(`${describeRow(row)}: ${e.message} (finished rows are kept in ${options.store.file})`);
          throw e;
        }
        if (actual !== undefined && reported < actual) emit({ type: 'advance', row, units: actual - reported });
        const result = { ...rowIdentity(row), ...measured };
        if (options.store.append(result)) appended.push(result); // else another sweep wrote it meanwhile
        emit({ type: 'finish', row, result });
      }
    } finally {
      await model.close();
    }
  }
  return { rows: rows.length, ran: appended.length, skipped: rows.length - appended.length, appended };
}
