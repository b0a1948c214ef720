import { parseSpec } from '../cache/registry.js';
import { checkEvalData, loadEvalTokens } from '../eval/data.js';
import { UsageError } from '../errors.js';
import { DEFAULT_TRACE_BYTES, recordTrace } from '../trace/record.js';
import { intOption, MODEL_OPTIONS, noPositionals, parse } from './args.js';
import { loadModelFromOptions } from './load.js';
import { formatBytes } from '../util/progress.js';

const HELP = `Usage: kvpack trace [--model M] --cache SPEC [--cache SPEC2]… (--prompt TEXT | --data D --limit N)
                    [--max-tokens N] [--max-mb MB] [--attention exact|fast] --out FILE

Records what the cache holds after every step — the prompt (compressed as a whole), then each
generated token — per layer and KV head: the positions held (delta-encoded), each held token's policy
score and, for codecs that do not store f32, each token's key/value quantization error. The first
--cache generates greedily; every other --cache is fed the same tokens, so they can be compared.
The file is JSON Lines, written as it goes (docs/trace.md); open it with kvpack view FILE.
  --prompt TEXT   the prompt
  --data D        wikitext2, c4, pg19, stories260k or a text file: its first --limit N tokens are the prompt
  --max-tokens N  tokens generated after the prompt (default 32)
  --max-mb MB     stop recording steps before the file passes MB megabytes (default ${DEFAULT_TRACE_BYTES / 2 ** 20})
  --attention M   how packed KV caches (int, kvquant) compute attention: exact (default) or fast
`;

export async function traceCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('trace', argv, {
    ...MODEL_OPTIONS,
    cache: { type: 'string', multiple: true },
    prompt: { type: 'string' },
    data: { type: 'string' },
    limit: { type: 'string' },
    'max-tokens': { type: 'string' },
    'max-mb': { type: 'string' },
    out: { type: 'string' },
  });
  if (values.help) return void process.stdout.write(HELP);
  noPositionals('trace', positionals, ' (use --prompt TEXT)');
  if (!values.out) throw new UsageError('trace needs --out FILE');
  const specs = values.cache ?? [];
  if (specs.length === 0) throw new UsageError('trace needs --cache SPEC (twice to compare two caches)');
  for (const spec of specs) parseSpec(spec);
  if ((values.prompt === undefined) === (values.data === undefined)) throw new UsageError('trace needs either --prompt TEXT or --data D --limit N');
  if (values.data !== undefined) checkEvalData(values.data);
  if (values.data !== undefined && values.limit === undefined) throw new UsageError('--data needs --limit N (prompt tokens)');
  if (values.prompt !== undefined && values.limit !== undefined) throw new UsageError('--limit goes with --data, not --prompt');
  const maxTokens = intOption('max-tokens', values['max-tokens'], 32, 0);
  const maxMb = intOption('max-mb', values['max-mb'], DEFAULT_TRACE_BYTES / 2 ** 20, 1);
  // the memory plan checks the default cache: the specs compared here are recorded one after the other
  const model = await loadModelFromOptions({ model: values.model, tokenizer: values.tokenizer, threads: values.threads, attention: values.attention, matmul: values.matmul });
  try {
    const prompt = values.prompt !== undefined
      ? model.tokenizer.encode(values.prompt, { addBos: model.tokenizer.addBosByDefault })
      : dataPrompt(values.data!, intOption('limit', values.limit, 0, 1), model.tokenizer);
    const summary = await recordTrace(model, { specs, prompt, maxTokens, out: values.out, maxBytes: maxMb * 2 ** 20 });
    const runs = summary.runs.map((r) => `${r.spec}: ${r.steps} steps${r.truncated ? ' (truncated by --max-mb)' : ''}, ${formatBytes(r.bytes)} held at the end (${r.compression.toFixed(2)}× vs fp16)`);
    process.stderr.write(`wrote ${summary.file}: ${(summary.bytes / 2 ** 20).toFixed(2)} MB of at most ${maxMb}, ${summary.tokens} tokens; ${runs.join('; ')}\n`);
  } finally {
    await model.close();
  }
}

/** The first `limit` tokens of a data set (a token set's documents are joined). */
function dataPrompt(data: string, limit: number, tokenizer: Parameters<typeof loadEvalTokens>[1]): number[] {
  const tokens = loadEvalTokens(data, tokenizer);
  const ids = tokens.kind === 'stream' ? tokens.ids : tokens.docs.flat();
  if (ids.length < limit) throw new UsageError(`--data ${data} has ${ids.length} tokens, fewer than --limit ${limit}`);
  return ids.slice(0, limit);
}
