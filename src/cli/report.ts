import fs from 'node:fs';
import path from 'node:path';
import { UsageError } from '../errors.js';
import { renderPlotPngs } from '../eval/browser.js';
import { PLOT_FILE } from '../eval/plots.js';
import { buildSections, renderHtml, renderMarkdown } from '../eval/report.js';
import { ResultStore, type ResultRow } from '../eval/store.js';
import { TRACE_SUFFIX, tracesBeside, tracesHtml, tracesMarkdown } from '../trace/listing.js';
import { noPositionals, parse } from './args.js';
import { own } from '../util/schema.js';
import writeFileAtomic from 'write-file-atomic';

const HELP = `Usage: kvpack report [--store FILE]… [--out DIR] [--png]

Renders results stores (default: every results/*.jsonl): one table per model, task and task
parameters, one row per cache spec, with the change against the full cache, and plots (quality vs
KV bytes per token, metrics vs budget, passkey/needle/multikey heatmaps, XSum ROUGE bars), and a list of the
cache traces (NAME${TRACE_SUFFIX}, from kvpack trace) found beside the stores, each with its kvpack view command.
  --out DIR   write DIR/index.html (self-contained, inline SVG), DIR/report.md and DIR/<plot>.svg for
              each plot (standalone, for a paper) instead of printing the Markdown
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
  noPositionals('report', positionals, ' (use --store FILE)');
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
  const traces = tracesBeside(files);
  if (values.out === undefined) return void process.stdout.write(renderMarkdown(sections.map((s) => s.table), sources) + tracesMarkdown(traces));
  try {
    await writeReport(values.out, sections, sources, traces, values.png === true);
  } catch (e) {
    throw outError(e, values.out);
  }
}

/**
 * DIR/index.html, DIR/report.md, an SVG per plot and with `png` a PNG per plot beside it. Each file is
 * written under a temporary name and renamed, so a failed report leaves the previous one whole.
 */
export async function writeReport(
  out: string,
  sections: ReturnType<typeof buildSections>,
  sources: { file: string; rows: number }[],
  traces: ReturnType<typeof tracesBeside>,
  png: boolean,
): Promise<void> {
  const tables = sections.map((s) => s.table);
  fs.mkdirSync(out, { recursive: true });
  const html = path.join(out, 'index.html');
  writeFileAtomic.sync(html, renderHtml(sections, sources).replace('</body>', `${tracesHtml(traces)}\n</body>`));
  // stale plots of a previous report would linger in a committed folder
  for (const f of fs.readdirSync(out)) if (PLOT_FILE.test(f) && (png || f.endsWith('.svg'))) fs.rmSync(path.join(out, f));
  for (const p of sections.flatMap((s) => s.plots)) {
    writeFileAtomic.sync(path.join(out, `${p.id}.svg`), `<?xml version="1.0" encoding="UTF-8"?>\n${p.svg}\n`);
  }
  let images: { file: string; title: string; svg?: string }[][] = [];
  if (png) {
    const written = new Set(await renderPlotPngs(html, out));
    images = sections.map((s) => s.plots.filter((p) => written.has(p.id)).map((p) => ({ file: `${p.id}.png`, title: p.title, svg: `${p.id}.svg` })));
  }
  const md = path.join(out, 'report.md');
  writeFileAtomic.sync(md, renderMarkdown(tables, sources, images) + tracesMarkdown(traces));
  const plots = sections.reduce((n, s) => n + s.plots.length, 0);
  process.stderr.write(`wrote ${html}, ${md}, ${plots} SVGs${png ? ` and ${images.flat().length} PNGs` : ''}\n`);
}

/** What the file system said, as one line naming --out (other errors pass through). */
const FS_PROBLEMS: Record<string, string> = {
  EEXIST: 'a file is in the way of the folder',
  ENOTDIR: 'part of the path is a file, not a folder',
  EISDIR: 'a folder is in the way of a file',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'the disk quota is used up',
};

function outError(e: unknown, out: string): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  const problem = code === undefined ? undefined : own(FS_PROBLEMS, code);
  if (!problem) return e;
  const where = (e as NodeJS.ErrnoException).path;
  return new UsageError(`--out ${out}: cannot write the report${where ? ` (${where})` : ''}: ${problem} (${code}); the previous report, if any, is unchanged`);
}

function defaultStores(): string[] {
  const dir = 'results';
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((n) => n.endsWith('.jsonl') && !n.endsWith(TRACE_SUFFIX)).sort().map((n) => path.join(dir, n));
}
