import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { renderPlotPngs } from '../eval/browser.js';
import { buildSections, renderHtml, renderMarkdown } from '../eval/report.js';
import { ResultStore, type ResultRow } from '../eval/store.js';
import { TRACE_SUFFIX, tracesBeside, tracesHtml, tracesMarkdown } from '../trace/listing.js';
import { parse } from './args.js';

const HELP = `Usage: kvpack report [--store FILE]… [--out DIR] [--png]

Renders results stores (default: every results/*.jsonl): one table per model, task and task
parameters, one row per cache spec, with the change against the full cache, and plots (quality vs
KV bytes per token, metrics vs budget, passkey/needle heatmaps, XSum ROUGE bars), and a list of the
cache traces (NAME${TRACE_SUFFIX}, from kvpack trace) found beside the stores, each with its kvpack view command.
  --out DIR   write DIR/index.html (self-contained, inline SVG) and DIR/report.md instead of printing
              the Markdown
  --png       also write DIR/<plot>.png for each plot, linked from report.md (headless Chromium and
              playwright-core; see npm run report)
  --store FILE  a results store to read (repeatable)
  -h, --help    this text
`;

/** The options `kvpack report` takes (its --help lists each). */
export const OPTIONS = {
  store: { type: 'string', multiple: true },
  out: { type: 'string' },
  png: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function reportCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('report', argv, OPTIONS);
  if (values.help) return void process.stdout.write(HELP);
  if (positionals.length) throw new UsageError(`report takes no positional arguments, got "${positionals.join(' ')}" (use --store FILE)`);
  if (values.png && values.out === undefined) throw new UsageError('--png needs --out DIR');
  const files = values.store ?? defaultStores();
  if (files.length === 0) throw new UsageError('no results/*.jsonl here; name a store with --store FILE');
  const rows: ResultRow[] = [];
  const sources: { file: string; rows: number }[] = [];
  for (const file of files) {
    if (!fs.existsSync(file)) throw new UsageError(`--store ${file}: no such file`);
    const store = ResultStore.open(file);
    rows.push(...store.rows().map((r) => ({ ...r, store: file })));
    sources.push({ file, rows: store.rows().length });
  }
  const sections = buildSections(rows);
  const tables = sections.map((s) => s.table);
  const traces = tracesBeside(files);
  if (values.out === undefined) return void process.stdout.write(renderMarkdown(tables, sources) + tracesMarkdown(traces));
  fs.mkdirSync(values.out, { recursive: true });
  const html = path.join(values.out, 'index.html');
  fs.writeFileSync(html, renderHtml(sections, sources).replace('</body>', `${tracesHtml(traces)}\n</body>`));
  let images: { file: string; title: string }[][] = [];
  if (values.png) {
    // stale PNGs of plots that no longer exist would linger in a committed folder
    for (const f of fs.readdirSync(values.out)) if (f.endsWith('.png')) fs.rmSync(path.join(values.out, f));
    const written = new Set(await renderPlotPngs(html, values.out));
    images = sections.map((s) => s.plots.filter((p) => written.has(p.id)).map((p) => ({ file: `${p.id}.png`, title: p.title })));
  }
  const md = path.join(values.out, 'report.md');
  fs.writeFileSync(md, renderMarkdown(tables, sources, images) + tracesMarkdown(traces));
  process.stderr.write(`wrote ${html}, ${md}${values.png ? ` and ${images.flat().length} PNGs` : ''}\n`);
}

function defaultStores(): string[] {
  const dir = 'results';
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl') && !n.endsWith(TRACE_SUFFIX)).sort().map((n) => path.join(dir, n));
}
