import { UsageError } from '../errors.js';
import { DEFAULT_VIEW_PORT, serveTrace } from '../trace/serve.js';
import { intOption, parse } from './args.js';

const HELP = `Usage: kvpack view FILE [--port P]

Serves the trace viewer for FILE (written by kvpack trace) at http://127.0.0.1:P/ until interrupted:
the text shaded by how many heads hold each token, a layer × head grid, a step slider, and two caches
side by side. Loopback only; the page fetches nothing from elsewhere.
  --port P   port to listen on (default ${DEFAULT_VIEW_PORT}; 0 picks a free one)
`;

export async function viewCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('view', argv, {
    port: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) return void process.stdout.write(HELP);
  if (positionals.length !== 1) throw new UsageError('view takes one trace file: kvpack view trace.jsonl');
  const port = intOption('port', values.port, DEFAULT_VIEW_PORT, 0);
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  const viewer = await serveTrace(positionals[0]!, port);
  process.stderr.write(`viewing ${positionals[0]} at ${viewer.url} (Ctrl-C to stop)\n`);
  await new Promise<void>((resolve) => process.once('SIGINT', resolve));
  await viewer.close();
}
