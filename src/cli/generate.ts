import { KvpackError, UsageError } from '../errors.js';
import { bytesOption, intOption, MODEL_HELP, MODEL_OPTIONS, parse, SAMPLING_HELP, SAMPLING_OPTIONS, samplingOptions } from './args.js';
import { loadModelFromOptions } from './load.js';
import fs from 'node:fs/promises';
import { text as streamText } from 'node:stream/consumers';
import type { GenerationTimings, Session } from '../engine/session.js';
import type { Model } from '../engine/model.js';
import { formatBytes } from '../util/progress.js';
import { compressionRatio, fullCacheBytes } from '../cache/kvcache.js';
import { Divergence } from '../eval/fidelity.js';

const HELP = `Usage: kvpack generate [--model M] [--tokenizer F] [--max-tokens N] [--temperature T] [--greedy] [--top-k K]
                       [--top-p P] [--min-p P] [--repeat-penalty R] [--repeat-last-n N] [--presence-penalty A]
                       [--frequency-penalty A] [--seed S] [--stop STR]… [--cache SPEC] [--compare] [--streaming]
                       [--max-kv-bytes B] [--threads K] ("prompt" | -f FILE | -)

Streams the continuation of the prompt (which must not be empty) to stdout; then prints on stderr
the bytes the KV cache holds against a full fp16 cache of the same tokens, and the speed: prompt
and generation tokens per second (sampling included; --compare's reference run is not).
${MODEL_HELP}
  -f, --file FILE  read the prompt from FILE (- for stdin; one trailing newline is dropped, as llama-cli does)
  -                the prompt is read from stdin
  --max-tokens N   tokens to generate (default 128)
${SAMPLING_HELP}
  --stop STR       stop before this string (repeatable)
  --cache SPEC     KV cache spec (default full: every token, stored as fp16)
  --compare        also run the full fp16 cache on the same tokens and print what the cache costs:
                   how often its most likely next token is the full cache's (top-1 agreement) and
                   KL(full ‖ cache) in nats per token
  --streaming      generate past the model's context with a fixed-budget cache (StreamingLLM positions)
  --max-kv-bytes B bytes the cache may hold (e.g. 512MiB): an evicting policy evicts early to stay under,
                   any other cache stops with an error before passing it
`;

/** The options `kvpack generate` takes (its --help lists each). */
export const OPTIONS = {
  ...MODEL_OPTIONS,
  file: { type: 'string', short: 'f' },
  'max-tokens': { type: 'string' },
  ...SAMPLING_OPTIONS,
  stop: { type: 'string', multiple: true },
  cache: { type: 'string' },
  compare: { type: 'boolean' },
  streaming: { type: 'boolean' },
  'max-kv-bytes': { type: 'string' },
} as const;

export async function generateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('generate', argv, OPTIONS);
  if (values.help) return void process.stdout.write(HELP);
  const prompt = await readPrompt(positionals, values.file);
  const options = {
    maxTokens: intOption('max-tokens', values['max-tokens'], 128, 1),
    ...samplingOptions(values),
    stop: values.stop ?? [],
  };
  const maxKvBytes = bytesOption('max-kv-bytes', values['max-kv-bytes']);
  if (values.compare && values.streaming) throw new UsageError('--compare runs the full cache beside yours, which cannot go past the model\'s context: drop --streaming or --compare');
  const model = await loadModelFromOptions(values);
  try {
    const session = model.session({ cache: values.cache, streaming: values.streaming, maxKvBytes });
    const compare = values.compare ? new FullCacheComparison(model, session) : undefined;
    const pieces = session.generate(prompt, { ...options, onLogits: compare?.onLogits });
    const first = await pieces.next(); // a prompt that does not fit fails here, before it is echoed
    process.stdout.write(prompt);
    try {
      for (let piece = first; !piece.done; piece = await pieces.next()) process.stdout.write(piece.value);
    } finally {
      process.stdout.write('\n'); // a stop mid-text (--max-kv-bytes) prints its error on a line of its own
    }
    process.stderr.write(cacheSummary(session) + '\n');
    if (compare) process.stderr.write(compare.summary() + '\n');
    process.stderr.write(speedSummary(session.lastTimings!) + '\n');
    compare?.dispose();
  } finally {
    await model.close();
  }
}

const PROMPT_HINT = 'kvpack generate "Once upon a time", -f FILE, or - to read stdin';

/** The prompt: the one positional argument, `-` (stdin), or --file FILE (`-`: stdin). */
async function readPrompt(positionals: string[], file: string | undefined): Promise<string> {
  if (positionals.length > 1) throw new UsageError(`generate takes one prompt; quote it: ${PROMPT_HINT}`);
  if (file !== undefined && positionals.length) throw new UsageError(`generate takes the prompt from --file or the command line, not both (got --file ${file} and "${positionals[0]}")`);
  const source = file ?? (positionals[0] === '-' ? '-' : undefined);
  const prompt = source === undefined ? positionals[0] ?? '' : await readText(source);
  if (prompt.trim() === '') throw new UsageError(`generate needs a prompt to continue${source === undefined ? '' : `, and ${source === '-' ? 'stdin' : source} holds none`}: ${PROMPT_HINT}`);
  return prompt;
}

/** A prompt file's text, or stdin's (`-`), without one trailing newline (an editor's, or echo's). */
async function readText(source: string): Promise<string> {
  let text: string;
  try {
    text = source === '-' ? await streamText(process.stdin) : await fs.readFile(source, 'utf8');
  } catch (e) {
    throw new KvpackError(`cannot read the prompt from ${source === '-' ? 'stdin' : source}: ${(e as Error).message}`);
  }
  return text.replace(/\r?\n$/, '');
}

/** "speed: prompt 5 tokens in 3.1 ms (1612.9 tokens/s); generation 20 tokens in 45.0 ms (444.4 tokens/s)", as llama-cli's timings. */
export function speedSummary(t: GenerationTimings): string {
  const rate = (tokens: number, ms: number) => `${tokens} token${tokens === 1 ? '' : 's'} in ${ms.toFixed(1)} ms (${ms > 0 ? (tokens / (ms / 1000)).toFixed(1) : '-'} tokens/s)`;
  return `speed: prompt ${rate(t.promptTokens, t.promptMs)}; generation ${rate(t.generatedTokens, t.generationMs)}`;
}

/**
 * Runs the full fp16 cache in lockstep with a generating session, fed the same tokens, and compares
 * the next-token distribution each generated token was sampled from with the full cache's.
 */
class FullCacheComparison {
  private readonly full: Session;
  private readonly divergence: Divergence;

  constructor(model: Model, private readonly session: Session) {
    this.full = model.session({ cache: 'full' });
    this.divergence = new Divergence(session.model.config.vocabSize);
  }

  readonly onLogits = (index: number, logits: Float32Array): void => {
    const fed = this.full.tokens.length;
    const reference = this.full.feed(this.session.tokens.slice(fed, index + 1));
    this.divergence.add(reference, logits);
  };

  dispose(): void {
    this.full.dispose();
  }

  summary(): string {
    const d = this.divergence;
    if (d.positions === 0) return 'vs full fp16: no tokens generated to compare';
    const agree = Math.round(d.top1() * d.positions);
    return `vs full fp16 on the same ${d.positions} tokens: top-1 agreement ${(100 * d.top1()).toFixed(1)}% (${agree}/${d.positions}), KL ${nats(d.kl())} nats/token (max ${nats(d.klMax)})`;
  }
}

/** A KL divergence: four decimals, or three significant digits when smaller (f32 against fp16 is ~1e-6). */
function nats(x: number): string {
  return x === 0 || x >= 1e-3 ? x.toFixed(4) : x.toExponential(2);
}

/**
 * "KV cache: 41.2 KiB held (full fp16: 180.0 KiB, 4.4x smaller)": what the spec saves on this
 * generation; with the codec's note (kvquant's f16 staging), the peak beside the bytes held now.
 */
export function cacheSummary(session: Session): string {
  const c = session.model.config;
  const held = session.cache.bytes();
  const fp16 = fullCacheBytes(c, session.tokens.length);
  const times = compressionRatio(c, session.tokens.length, held);
  const ratio = times >= 1 ? `${times.toFixed(1)}x smaller` : `${(1 / times).toFixed(1)}x larger`;
  const line = `KV cache: ${formatBytes(held)} held (full fp16: ${formatBytes(fp16)}, ${ratio})`;
  const note = session.cache.note();
  if (!note) return line;
  const peak = session.cache.peakBytes();
  return `${line}${peak > held ? `; ${formatBytes(peak)} at the peak` : ''}\n${note}`;
}
