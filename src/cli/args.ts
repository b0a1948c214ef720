import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../errors.js';
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
    throw new UsageError(`${(e as Error).message.replace(/\. To specify.*$/s, '')} (see kvpack ${command} --help)`);
  }
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
