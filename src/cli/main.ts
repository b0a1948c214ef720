#!/usr/bin/env node
import { KvpackError, UsageError } from '../errors.js';
import { cachesCommand } from './caches.js';
import { calibrateCommand } from './calibrate.js';
import { chatCommand } from './chat.js';
import { evalCommand } from './eval.js';
import { generateCommand } from './generate.js';
import { infoCommand } from './info.js';
import { pplCommand } from './ppl.js';
import { reportCommand } from './report.js';
import { serveCommand } from './serve.js';
import { sweepCommand } from './sweep.js';
import { traceCommand } from './trace.js';
import { viewCommand } from './view.js';
import { workerCommand } from './worker.js';

const COMMANDS: Record<string, { run: (argv: string[]) => Promise<void>; summary: string }> = {
  generate: { run: generateCommand, summary: 'stream text from a prompt' },
  chat: { run: chatCommand, summary: "an interactive chat through the model's template; the cache's bytes after each turn" },
  ppl: { run: pplCommand, summary: 'perplexity on wikitext2, c4, pg19 or a text file' },
  info: { run: infoCommand, summary: 'architecture, parameters, dtypes, KV bytes per token' },
  eval: { run: evalCommand, summary: 'run one task (ppl, fidelity, xsum, passkey, needle, multikey, copy) once for one or more cache specs' },
  sweep: { run: sweepCommand, summary: 'run a plan of models × cache specs × tasks into a resumable results store' },
  worker: { run: workerCommand, summary: 'run sweep units from a Redis queue (kvpack sweep PLAN --queue URL), on any machine' },
  report: { run: reportCommand, summary: 'tables and plots (Markdown, HTML, PNG) from results stores' },
  trace: { run: traceCommand, summary: 'record what the cache holds, scores and quantization errors, step by step' },
  view: { run: viewCommand, summary: 'explore a trace in the browser (served on 127.0.0.1)' },
  caches: { run: cachesCommand, summary: 'every cache policy and codec: parameters, defaults, ranges and the paper it comes from' },
  calibrate: { run: calibrateCommand, summary: 'KVQuant calibration file (Fisher-weighted datatypes, key thresholds) for kvquant(calib=FILE)' },
  serve: { run: serveCommand, summary: 'an OpenAI-compatible server; each request chooses its KV cache, all share one KV byte budget' },
};

/** Exit codes (documented in the README): a bad command line, a run that failed, a bug. */
const EXIT = { usage: 2, failure: 1, internal: 70 } as const;

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `kvpack — Llama-family models in Node.js with a compressed KV cache\n\nUsage: kvpack <command> [options]\n\n${lines.join('\n')}\n\nkvpack <command> --help for its options.\n`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    (name ? process.stdout : process.stderr).write(usage());
    return name ? 0 : EXIT.usage;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`kvpack: unknown command "${name}"; commands are ${Object.keys(COMMANDS).join(', ')}\n`);
    return EXIT.usage;
  }
  try {
    await command.run(rest);
    return 0;
  } catch (e) {
    if (e instanceof KvpackError) {
      process.stderr.write(`kvpack ${name}: ${e.message}\n`);
      return e instanceof UsageError ? EXIT.usage : EXIT.failure;
    }
    process.stderr.write(`kvpack ${name}: internal error (please report): ${(e as Error).stack ?? String(e)}\n`);
    return EXIT.internal;
  }
}

// A reader that closed the pipe (`kvpack info | head -1`) wants no more output: stop quietly.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
}

process.exitCode = await main(process.argv.slice(2));
