import { UsageError } from '../errors.js';
import { bytesOption, intOption, MODEL_HELP, MODEL_OPTIONS, option, parse } from './args.js';
import { SAMPLING_PARAMS } from '../sample.js';
import { loadModelFromOptions } from './load.js';
import type { Session } from '../session.js';
import type { Model } from '../model.js';
import { formatBytes } from '../util/progress.js';
import { compressionRatio, fullCacheBytes } from '../cache/kvcache.js';
import { Divergence } from '../eval/fidelity.js';

const HELP = `Usage: kvpack generate [--model M] [--tokenizer F] [--max-tokens N] [--temperature T] [--top-p P]
                       [--seed S] [--greedy] [--stop STR]… [--cache SPEC] [--compare] [--streaming] [--max-kv-bytes B]
                       [--threads K] "prompt"

Streams the continuation of the prompt (which must not be empty) to stdout; then prints on stderr
the bytes the KV cache holds against a full fp16 cache of the same tokens.
${MODEL_HELP}
  --max-tokens N   tokens to generate (default 128)
  --temperature T  0 = greedy (default 0.8);  --greedy is the same as --temperature 0
  --top-p P        nucleus sampling mass; the most likely token is always kept (default 0.95)
  --seed S         sampling seed, 0 to 2^32−1 (default 0)
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
  'max-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
  greedy: { type: 'boolean' },
  stop: { type: 'string', multiple: true },
  cache: { type: 'string' },
  compare: { type: 'boolean' },
  streaming: { type: 'boolean' },
  'max-kv-bytes': { type: 'string' },
} as const;

export async function generateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('generate', argv, OPTIONS);
  if (values.help) return void process.stdout.write(HELP);
  if (positionals.length > 1) throw new UsageError('generate takes one prompt; quote it: kvpack generate "Once upon a time"');
  const prompt = positionals[0] ?? '';
  if (prompt.trim() === '') throw new UsageError('generate needs a prompt to continue: kvpack generate "Once upon a time"');
  const options = {
    maxTokens: intOption('max-tokens', values['max-tokens'], 128, 1),
    temperature: values.greedy ? 0 : option('temperature', SAMPLING_PARAMS.temperature, values.temperature, 0.8),
    topP: option('top-p', SAMPLING_PARAMS.topP, values['top-p'], 0.95),
    seed: option('seed', SAMPLING_PARAMS.seed, values.seed, 0),
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
    for (let piece = first; !piece.done; piece = await pieces.next()) process.stdout.write(piece.value);
    process.stdout.write('\n');
    process.stderr.write(cacheSummary(session) + '\n');
    if (compare) process.stderr.write(compare.summary() + '\n');
    compare?.dispose();
  } finally {
    await model.close();
  }
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
function cacheSummary(session: Session): string {
  const c = session.model.config;
  const held = session.cache.bytes();
  const fp16 = fullCacheBytes(c, session.tokens.length);
  const times = compressionRatio(c, session.tokens.length, held);
  const ratio = times >= 1 ? `${times.toFixed(1)}x smaller` : `${(1 / times).toFixed(1)}x larger`;
  const line = `KV cache: ${formatBytes(held)} held (full fp16: ${formatBytes(fp16)}, ${ratio})`;
  const note = session.cache.codec.note?.();
  if (!note) return line;
  const peak = session.cache.peakBytes();
  return `${line}${peak > held ? `; ${formatBytes(peak)} at the peak` : ''}\n${note}`;
}
