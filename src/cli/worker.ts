import { UsageError } from '../errors.js';
import { describeQueue, queueConnection } from '../eval/queue.js';
import { startWorker } from '../eval/worker.js';
import { exitSoon, intOption, noPositionals, parse, threadsOption } from './args.js';

const HELP = `Usage: kvpack worker --queue redis://HOST:PORT [--threads K] [--lock-ms N]

Runs the units of sweeps started with kvpack sweep PLAN --queue URL, one at a time, until stopped.
Each model is loaded once and kept while its units come; a unit whose model file here differs from
the plan's (another fingerprint) is refused. Results go back through the queue: the sweep's
coordinator writes the store. SIGTERM or Ctrl-C finishes the unit in hand, then exits 0.
Paths in units (models, data files) are read from this worker's working directory; repo ids are
downloaded into this machine's Hugging Face cache.
  --queue URL    Redis: redis://[:PASSWORD@]HOST:PORT[/DB], or rediss:// for TLS
  --threads K    kernel threads (default: one per CPU core)
  --lock-ms N    a unit whose worker stops renewing its lock for N ms is run elsewhere (default 30000)
  -h, --help     this text
`;

export const OPTIONS = {
  queue: { type: 'string' },
  threads: { type: 'string' },
  'lock-ms': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function workerCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('worker', argv, OPTIONS);
  if (values.help) return void process.stdout.write(HELP);
  noPositionals('worker', positionals);
  if (values.queue === undefined) throw new UsageError('worker needs --queue redis://HOST:PORT (see kvpack worker --help)');
  queueConnection(values.queue); // checked before anything starts
  const threads = threadsOption(values.threads);
  const lockMs = intOption('lock-ms', values['lock-ms'], 30_000, 100);
  const log = (line: string) => process.stderr.write(`worker: ${line}\n`);
  log(`taking units from ${describeQueue(values.queue)} (${threads} threads)`);
  const worker = startWorker({ queue: values.queue, threads, lockMs, log });
  let stopping = false;
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      if (stopping) {
        log(`${signal} again: stopping now; the unit in hand will run elsewhere`);
        process.exit(1);
      }
      stopping = true;
      log(`${signal}: finishing the unit in hand, then exiting (${signal} again: stop now)`);
      worker.stop().then(resolve, resolve);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  try {
    await Promise.race([stopped, worker.refused]);
    log('stopped');
  } finally {
    exitSoon();
  }
}
