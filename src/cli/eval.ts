import { UsageError } from '../errors.js';
import { buildTables, renderMarkdown } from '../eval/report.js';
import { defaultContext } from '../eval/data.js';
import { finishedRow, type ResultRow } from '../eval/store.js';
import { taskParams, TASKS, type Task } from '../eval/tasks.js';
import { fromWords } from '../util/schema.js';
import { parseSpec, printSpec } from '../cache/registry.js';
import { Progress } from '../util/progress.js';
import { MODEL_HELP, MODEL_OPTIONS, matmulOption, option, parse, threadsOption } from './args.js';
import { SAMPLING_PARAMS } from '../engine/sample.js';
import { loadModelFromOptions } from './load.js';

function help(): string {
  const tasks = [...TASKS.values()].map((t) => {
    const params = Object.entries(t.params).map(([k, s]) => `${k}${s.default === undefined ? '' : `=${s.default}`}`).join(' ');
    return `  ${t.name.padEnd(9)} ${t.doc}\n            ${params}${t.limit ? `   (--limit sets ${t.limit})` : ''}`;
  });
  return `Usage: kvpack eval TASK [key=value]… [--model M] [--tokenizer F] [--cache SPEC]… [--data D] [--limit N]
                   [--seed S] [--json] [--threads K]

Runs one task once, without a results store; several --cache run one after the other on the same
model and print one table (default: full). Δ columns compare with an uncompressed cache when one runs
(full, which stores fp16, else full+fp32); compression is against the full fp16 cache.
Task parameters are key=value words after the task name: kvpack eval ppl data=c4 ctx=512.
${MODEL_HELP}
  --cache SPEC     a KV cache spec to run (repeatable; default full; a spec without a codec stores fp16)
  --data D         the data of tasks that take one (the same as data=D)
  --limit N        fewer chunks, items or trials (the parameter named per task below)
  --seed S         sampling seed of tasks that sample (default 0)
  --json           print one result row per cache as JSON lines
Tasks:
${tasks.join('\n')}
`;
}

/** The options `kvpack eval` takes (its --help lists each). */
export const OPTIONS = {
  ...MODEL_OPTIONS,
  cache: { type: 'string', multiple: true },
  data: { type: 'string' },
  limit: { type: 'string' },
  seed: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export async function evalCommand(argv: string[]): Promise<void> {
  const taskOption = argv.map((a) => /^--([^=]+)/.exec(a)?.[1]).find((o) => o !== undefined && !(o in OPTIONS) && [...TASKS.values()].some((t) => o in t.params));
  if (taskOption) throw new UsageError(`task parameters are key=value words after the task, not options: ${taskOption}=… instead of --${taskOption} (e.g. kvpack eval ppl data=stories260k ctx=256)`);
  const { values, positionals } = parse('eval', argv, OPTIONS);
  if (values.help) return void process.stdout.write(help());
  const [name, ...pairs] = positionals;
  if (!name) throw new UsageError(`eval needs a task: ${[...TASKS.keys()].join(', ')} (see kvpack eval --help)`);
  const task = TASKS.get(name);
  if (!task) throw new UsageError(`unknown task "${name}"; tasks: ${[...TASKS.keys()].join(', ')}`);
  const words: Record<string, string> = Object.create(null) as Record<string, string>; // `__proto__=1` is a word like any other
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`task parameters are key=value, got "${pair}"`);
    words[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  if (values.data !== undefined) {
    if (!('data' in task.params)) throw new UsageError(`--data: task ${name} takes no data (its parameters: ${Object.keys(task.params).join(', ')})`);
    if ('data' in words && words.data !== values.data) throw new UsageError(`--data ${values.data} and data=${words.data} disagree: give one`);
    words.data = values.data;
  }
  if (values.limit !== undefined) {
    if (!task.limit) throw new UsageError(`--limit: task ${name} has nothing to limit`);
    words[task.limit] = values.limit;
  }
  let params = taskParams(task, fromWords(task.params, words), { where: '', param: (key) => key });
  const seed = option('seed', SAMPLING_PARAMS.seed, values.seed, 0);
  // Canonical specs, checked before the model loads.
  const caches = (values.cache ?? ['full']).map((c) => {
    try {
      return printSpec(parseSpec(c));
    } catch (e) {
      if (e instanceof UsageError) throw new UsageError(`--cache ${c}: ${e.message}`);
      throw e;
    }
  });
  threadsOption(values.threads); // checked before the model loads
  matmulOption(values.matmul);
  const model = await loadModelFromOptions({ ...values, cache: undefined });
  if ('ctx' in task.params && params.ctx === undefined && typeof params.data === 'string') {
    params = { ...params, ctx: defaultContext(params.data, model.config.maxContext) }; // shown in the table's title
  }
  const rows: ResultRow[] = [];
  try {
    for (const cache of caches) rows.push(await runOne(task, model, cache, params, seed, values.model ?? 'ref-6m', Boolean(values.json)));
  } finally {
    await model.close();
  }
  if (values.json) return;
  const text = renderMarkdown(buildTables(rows)).split('\n').slice(2).join('\n');
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

async function runOne(task: Task, model: Awaited<ReturnType<typeof loadModelFromOptions>>, cache: string, params: ResultRow['params'], seed: number, modelName: string, json: boolean): Promise<ResultRow> {
  // started with the run (not at its first report), so its time and the row's seconds agree
  const bar = new Progress({ total: 0, label: `${task.name} ${cache}`, unit: 'tok' });
  let reported = 0;
  const started = performance.now();
  const out = await task.run(model, cache, params, {
    seed,
    onProgress: (done, total) => {
      if (total !== undefined) bar.setTotal(total);
      bar.tick(done - reported);
      reported = done;
    },
  });
  bar.done();
  const row = finishedRow({ key: `eval|${cache}|${task.name}`, model: modelName, model_fingerprint: 'eval', cache, task: task.name, params, seed }, out, started);
  if (json) process.stdout.write(`${JSON.stringify(row)}\n`);
  return row;
}
