import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { buildTables, renderMarkdown } from '../eval/report.js';
import { ResultStore, type ResultRow } from '../eval/store.js';
import { parse } from './args.js';

const HELP = `Usage: kvpack report [--store FILE]… [--out DIR]

Renders results stores (default: every results/*.jsonl) as Markdown: one table per model, task and
task parameters, one row per cache spec, with the change against the full cache.
  --out DIR   write DIR/report.md instead of printing
`;

export async function reportCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('report', argv, {
    store: { type: 'string', multiple: true },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) return void process.stdout.write(HELP);
  if (positionals.length) throw new UsageError(`report takes no positional arguments, got "${positionals.join(' ')}" (use --store FILE)`);
  const files = values.store ?? defaultStores();
  if (files.length === 0) throw new UsageError('no results/*.jsonl here; name a store with --store FILE');
  const rows: ResultRow[] = [];
  const sources: { file: string; rows: number }[] = [];
  for (const file of files) {
    if (!fs.existsSync(file)) throw new UsageError(`--store ${file}: no such file`);
    const store = ResultStore.open(file);
    rows.push(...store.rows());
    sources.push({ file, rows: store.rows().length });
  }
  const markdown = renderMarkdown(buildTables(rows), sources);
  if (values.out === undefined) return void process.stdout.write(markdown);
  fs.mkdirSync(values.out, { recursive: true });
  const target = path.join(values.out, 'report.md');
  fs.writeFileSync(target, markdown);
  process.stderr.write(`wrote ${target}\n`);
}

function defaultStores(): string[] {
  const dir = 'results';
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl')).sort().map((n) => path.join(dir, n));
}
