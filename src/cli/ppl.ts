import { parseSpec } from '../cache/registry.js';
import { perplexity } from '../eval/ppl.js';
import { pplOptions, pplTask, taskParams } from '../eval/tasks.js';
import { UsageError } from '../errors.js';
import { fromWords } from '../util/schema.js';
import { Progress } from '../util/progress.js';
import { bytesOption, MODEL_HELP, MODEL_OPTIONS, noPositionals, parse } from './args.js';
import { loadModelFromOptions } from './load.js';

const HELP = `Usage: kvpack ppl [--model M] [--data wikitext2|c4|pg19|stories260k|FILE] [--ctx N] [--chunks N]
                  [--mode chunked|decode] [--cache SPEC] [--max-kv-bytes B] [--streaming] [--window N] [--json] [--threads K]

Perplexity the way the GPTQ/KVQuant scripts compute it: the joined text is tokenized, cut into
non-overlapping ctx-token chunks, each scored from an empty cache; exp of the mean NLL.
${MODEL_HELP}
  --data D      wikitext2, c4, pg19 (text, tokenized by the model), stories260k (stories260K's own
                token ids, one story per chunk), or the path of a text file (default wikitext2)
  --ctx N       tokens per chunk (default: the model's context; stories260k: its longest story)
  --chunks N    score at most N chunks (default: all)
  --mode M      chunked (default) scores ctx tokens per forward call; decode feeds one token at a
                time, as generation does, so eviction acts as it would
  --cache SPEC  KV cache spec (default full: every token, stored as fp16)
  --streaming   run chunks longer than the model's context with a fixed-budget cache
                (RoPE positions become ranks among the held tokens, as in StreamingLLM)
  --window N    also report perplexity per N-position window (to see it stay flat)
  --max-kv-bytes B  bytes the cache may hold (e.g. 512MiB): an evicting policy evicts early,
                any other cache stops with an error before passing it
  --json        print one JSON object instead of a line
`;

/** The options `kvpack ppl` takes (its --help lists each). */
export const OPTIONS = {
  ...MODEL_OPTIONS,
  data: { type: 'string' },
  ctx: { type: 'string' },
  chunks: { type: 'string' },
  mode: { type: 'string' },
  cache: { type: 'string' },
  streaming: { type: 'boolean' },
  window: { type: 'string' },
  json: { type: 'boolean' },
  'max-kv-bytes': { type: 'string' },
} as const;

export async function pplCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('ppl', argv, OPTIONS);
  if (values.help) return void process.stdout.write(HELP);
  noPositionals('ppl', positionals);
  // the options are the ppl task's parameters, read as `kvpack eval ppl` reads them
  const words = { data: values.data, ctx: values.ctx, chunks: values.chunks, mode: values.mode, streaming: values.streaming ? 'yes' : undefined, window: values.window };
  const params = taskParams(pplTask, fromWords(pplTask.params, words), { where: '', param: (key) => `--${key}` });
  if (params.mode === 'chunked' && values.cache && parseSpec(values.cache).policy.name !== 'full') {
    // chunked scoring compresses only between chunks: every prediction sees its whole chunk
    process.stderr.write('note: chunked mode cannot show what eviction costs; use --mode decode for that\n');
  }
  const maxKvBytes = bytesOption('max-kv-bytes', values['max-kv-bytes']);
  const model = await loadModelFromOptions({ ...values, context: params.ctx });
  try {
    // started with the run (not at its first report), so its time and the summary's agree
    const bar = new Progress({ total: 0, label: `ppl ${params.data}`, unit: 'tok' });
    let reported = 0;
    const result = perplexity(model, {
      ...pplOptions(params, values.cache ?? 'full', (done, total) => {
        bar.setTotal(total);
        bar.tick(done - reported);
        reported = done;
      }),
      maxKvBytes,
    });
    bar.done();
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      process.stdout.write(
        `${result.data}: perplexity ${result.ppl.toFixed(3)} over ${result.tokens} tokens (${result.chunks} chunks of ${result.ctx}, ${result.mode}, cache ${result.cache}) in ${result.seconds.toFixed(1)} s\n`,
      );
      if (result.windows) process.stdout.write(`per ${params.window}-position window: ${result.windows.map((p) => p.toFixed(2)).join(' ')}\n`);
    }
    if (result.memory.note) process.stderr.write(`${result.memory.note}\n`);
  } finally {
    await model.close();
  }
}
