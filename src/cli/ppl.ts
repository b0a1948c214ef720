import { parseSpec } from '../cache/registry.js';
import { perplexity } from '../eval/ppl.js';
import { UsageError } from '../errors.js';
import { Progress } from '../util/progress.js';
import { intOption, MODEL_OPTIONS, parse } from './args.js';
import { loadModelFromOptions } from './load.js';

const HELP = `Usage: kvpack ppl [--model M] --data wikitext2|c4|pg19|FILE [--ctx 2048] [--chunks N]
                  [--mode chunked|decode] [--cache SPEC] [--streaming] [--window N] [--json]

Perplexity the way the GPTQ/KVQuant scripts compute it: the joined text is tokenized, cut into
non-overlapping ctx-token chunks, each scored from an empty cache; exp of the mean NLL.
  --mode decode feeds one token at a time, as generation does.
  --streaming   run chunks longer than the model's context with a fixed-budget cache
                (RoPE positions become ranks among the held tokens, as in StreamingLLM)
  --window N    also report perplexity per N-position window (to see it stay flat)
`;

export async function pplCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('ppl', argv, {
    ...MODEL_OPTIONS,
    data: { type: 'string' },
    ctx: { type: 'string' },
    chunks: { type: 'string' },
    mode: { type: 'string' },
    cache: { type: 'string' },
    streaming: { type: 'boolean' },
    window: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) return void process.stdout.write(HELP);
  if (positionals.length) throw new UsageError(`ppl takes no positional arguments, got "${positionals.join(' ')}"`);
  if (!values.data) throw new UsageError('ppl needs --data wikitext2|c4|pg19|FILE');
  const mode = values.mode ?? 'chunked';
  if (mode !== 'chunked' && mode !== 'decode') throw new UsageError(`--mode must be chunked or decode, got "${mode}"`);
  const ctx = intOption('ctx', values.ctx, 2048, 2);
  const chunks = values.chunks === undefined ? undefined : intOption('chunks', values.chunks, 1, 1);
  if (mode === 'chunked' && values.cache && parseSpec(values.cache).policy.name !== 'full') {
    // chunked scoring compresses only between chunks: every prediction sees its whole chunk
    process.stderr.write('note: chunked mode cannot show what eviction costs; use --mode decode for that\n');
  }
  const model = await loadModelFromOptions(values);
  try {
    let bar: Progress | undefined;
    let reported = 0;
    const result = perplexity(model, {
      data: values.data, ctx, chunks, mode, cache: values.cache, streaming: values.streaming,
      windowSize: values.window === undefined ? undefined : intOption('window', values.window, 1, 1),
      onProgress: (done, total) => {
        bar ??= new Progress({ total, label: `ppl ${values.data}`, unit: 'tok' });
        bar.tick(done - reported);
        reported = done;
      },
    });
    bar?.done();
    if (values.json) {
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      process.stdout.write(
        `${result.data}: perplexity ${result.ppl.toFixed(3)} over ${result.tokens} tokens (${result.chunks} chunks of ${result.ctx}, ${result.mode}, cache ${result.cache}) in ${result.seconds.toFixed(1)} s\n`,
      );
      if (result.windows) process.stdout.write(`per ${values.window}-position window: ${result.windows.map((p) => p.toFixed(2)).join(' ')}\n`);
    }
  } finally {
    await model.close();
  }
}
