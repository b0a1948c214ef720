import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';
import { threadsParam } from '../kernels/index.js';
import { int, number, read, type Param } from '../util/schema.js';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every model-running command takes. */
export const MODEL_OPTIONS = {
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  threads: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** The help lines of MODEL_OPTIONS, the same in every command's --help. */
export const MODEL_HELP = `  --model M        a model directory, .gguf or llama2.c .bin, or a Hugging Face repo id
                   (default ../shared/models/ref-6m)
  --tokenizer F    a tokenizer file instead of the one found with the model (llama2.c tokenizer.bin, tokenizer.json)
  --threads K      worker threads (default: one per CPU core)
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

/** --threads: every core when not given, more than the machine has refused (see threadsParam). */
export function threadsOption(text: string | undefined): number {
  const p = threadsParam();
  return option('threads', p, text, p.default!);
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

/**
 * Ends the process a second after this is called (in a command's `finally`), whatever is left
 * running: the output drains meanwhile, and a Redis client whose server is away (or refused it)
 * would keep reconnecting forever. The exit code is the one the command's outcome set.
 */
export function exitSoon(): void {
  setTimeout(() => process.exit(), 1000).unref();
}
