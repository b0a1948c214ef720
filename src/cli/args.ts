import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';
import { MATMUL_MODES, threadsParam, type MatmulMode } from '../kernels/index.js';
import { SAMPLING_PARAMS, type SamplingOptions } from '../engine/sample.js';
import { int, number, oneOf, read, type Param } from '../util/schema.js';
import { ATTENTION_MODES, DEFAULT_ATTENTION, type AttentionMode } from '../cache/codec.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every model-running command takes. */
export const MODEL_OPTIONS = {
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  threads: { type: 'string' },
  attention: { type: 'string' },
  matmul: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** The help lines of MODEL_OPTIONS, the same in every command's --help. */
export const MODEL_HELP = `  --model M        a model directory, .gguf or llama2.c .bin, or a Hugging Face repo id
                   (default shared/models/ref-6m in the nearest folder above kvpack or the working directory)
  --tokenizer F    a tokenizer file instead of the one found with the model (llama2.c tokenizer.bin, tokenizer.json)
  --threads K      worker threads (default: one per CPU core)
  --attention M    how packed KV caches (int, kvquant) compute attention: exact (f32, the default) or fast
                   (integer dot products on rounded queries and weights; docs/quantization.md)
  --matmul MODE    quantized weights × activations: fast (default: activations rounded to 8 bits and
                   integer dot products, as llama.cpp) or exact (f32 activations)
  -h, --help       this text`;

/** parseArgs with its errors turned into UsageErrors that say which command is at fault. */
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: true; strict: true }>>;

export function parse<O extends Options>(command: string, argv: string[], options: O): Parsed<O> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    // one line: parseArgs words some errors over several ("argument is ambiguous … use '--seed=-XYZ'")
    const raw = (e as Error).message;
    const message = (/ambiguous/.test(raw) ? raw : raw.replace(/\. To specify.*$/s, '')).replace(/\s*\n\s*/g, ' ');
    throw new UsageError(`${message} (see kvpack ${command} --help)`);
  }
}

/** Refuses positional arguments a command does not take (`hint`: what to use instead). */
export function noPositionals(command: string, positionals: string[], hint = ''): void {
  if (positionals.length) throw new UsageError(`${command} takes no positional arguments, got "${positionals.join(' ')}"${hint}`);
}

/** An option's text read through its schema parameter (`--name` in messages); `fallback` when it is not given. */
export function option<T>(name: string, p: Param<T>, text: string | undefined, fallback: T): T {
  if (text === undefined) return fallback;
  const r = read(p, p.fromText(text));
  if ('problem' in r) throw new UsageError(`--${name} ${r.problem}, got "${text}"`);
  return r.value;
}

export function intOption(name: string, text: string | undefined, fallback: number, min = 0): number {
  return option(name, int({ min, doc: name }), text, fallback);
}

export function numberOption(name: string, text: string | undefined, fallback: number, min: number, max: number): number {
  return option(name, number({ min, max, doc: name }), text, fallback);
}

/** --attention: exact or fast (undefined when not given: the library's default). */
export function attentionOption(text: string | undefined): AttentionMode | undefined {
  return text === undefined ? undefined : option('attention', oneOf(ATTENTION_MODES, { doc: 'attention' }), text, DEFAULT_ATTENTION);
}

/** --threads: every core when not given, more than the machine has refused (see threadsParam). */
export function threadsOption(text: string | undefined): number {
  const p = threadsParam();
  return option('threads', p, text, p.default!);
}

/** --matmul: fast (default) or exact (see MatmulMode). */
export function matmulOption(text: string | undefined): MatmulMode {
  return option('matmul', oneOf(MATMUL_MODES, { doc: 'how quantized weights meet the activations' }), text, 'fast');
}

const BYTE_UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** --name as a byte count: 1073741824, 512MiB, 2G, 1.5GiB (binary units); undefined when not given. */
export function bytesOption(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?$/i.exec(text.trim());
  const bytes = m ? Math.floor(Number(m[1]) * BYTE_UNITS[m[2]!.toLowerCase()]!) : NaN;
  if (!(bytes > 0)) throw new UsageError(`--${name} must be a positive byte count such as 512MiB or 2GiB, got "${text}"`);
  return bytes;
}

/** The sampling options of generate and chat: llama-cli's names, and its defaults where the library's differ. */
const SAMPLING_FLAGS = {
  temperature: { key: 'temperature', fallback: 0.8 },
  'top-k': { key: 'topK', fallback: 40 },
  'top-p': { key: 'topP', fallback: 0.95 },
  'min-p': { key: 'minP', fallback: 0.05 },
  'repeat-penalty': { key: 'repeatPenalty', fallback: 1 },
  'repeat-last-n': { key: 'repeatLastN', fallback: 64 },
  'presence-penalty': { key: 'presencePenalty', fallback: 0 },
  'frequency-penalty': { key: 'frequencyPenalty', fallback: 0 },
  seed: { key: 'seed', fallback: 0 },
} as const satisfies Record<string, { key: keyof typeof SAMPLING_PARAMS; fallback: number }>;

export const SAMPLING_OPTIONS = {
  ...(Object.fromEntries(Object.keys(SAMPLING_FLAGS).map((name) => [name, { type: 'string' }])) as Record<keyof typeof SAMPLING_FLAGS, { type: 'string' }>),
  greedy: { type: 'boolean' },
} as const satisfies Options;

export const SAMPLING_HELP = `  Sampling, in llama.cpp's order: penalties → top-k → top-p → min-p → temperature (llama-cli's defaults)
  --temperature T  0 = greedy (default 0.8);  --greedy is the same as --temperature 0
  --repeat-penalty R   a positive logit of a token among the last N is divided by R, a negative one
                       multiplied (CTRL, as llama.cpp does it; default 1 = off, must be > 0)
  --repeat-last-n N    tokens of history (prompt included) the penalties look back on (default 64, -1 = all, 0 = off)
  --presence-penalty A subtracted once from the logit of every token among those N, -2 to 2 (default 0)
  --frequency-penalty A subtracted per occurrence among those N, -2 to 2 (default 0)
  --top-k K        keep the K most likely tokens (default 40, 0 = all)
  --top-p P        nucleus: the fewest most likely tokens reaching mass P; the most likely is always kept (default 0.95)
  --min-p P        keep the tokens at least P times as likely as the most likely (default 0.05, 0 = off)
  --seed S         sampling seed, 0 to 2^32−1 (default 0)`;

/** The sampling options given (llama-cli's defaults otherwise), checked through the library's schema. */
export function samplingOptions(values: Partial<Record<keyof typeof SAMPLING_OPTIONS, string | boolean>>): Required<SamplingOptions> {
  const out: Record<string, number> = {};
  for (const [name, { key, fallback }] of Object.entries(SAMPLING_FLAGS)) out[key] = option(name, SAMPLING_PARAMS[key], values[name as keyof typeof SAMPLING_FLAGS] as string | undefined, fallback);
  if (values.greedy) out.temperature = 0;
  return out as unknown as Required<SamplingOptions>;
}

/**
 * Ends the process a second after this is called (in a command's `finally`), whatever is left
 * running: the output drains meanwhile, and a Redis client whose server is away (or refused it)
 * would keep reconnecting forever. The exit code is the one the command's outcome set.
 */
export function exitSoon(): void {
  setTimeout(() => process.exit(), 1000).unref();
}
