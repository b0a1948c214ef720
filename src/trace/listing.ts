import fs from 'node:fs';
import path from 'node:path';
import { esc } from '../eval/plots.js';
import type { EndRecord, HeaderRecord, RunRecord } from './format.js';
import { DEFAULT_VIEW_PORT } from './serve.js';

/** Trace files are named NAME.trace.jsonl (so a results folder tells them from results stores). */
export const TRACE_SUFFIX = '.trace.jsonl';

export interface TraceListing {
  file: string;
  bytes: number;
  model: string;
  runs: { spec: string; steps: number | undefined; truncated: boolean }[];
}

/** The traces in the folders of these results stores, each summarised from its short records. */
export function tracesBeside(storeFiles: readonly string[]): TraceListing[] {
  const dirs = [...new Set(storeFiles.map((f) => path.dirname(f)))];
  const files = dirs.flatMap((d) => (fs.existsSync(d) ? fs.readdirSync(d).filter((n) => n.endsWith(TRACE_SUFFIX)).sort().map((n) => path.join(d, n)) : []));
  return files.flatMap((file) => {
    const listing = summarise(file);
    return listing ? [listing] : [];
  });
}

/** Reads only the header, run and end lines (step lines are skipped unparsed); undefined if not a trace. */
function summarise(file: string): TraceListing | undefined {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const parse = <T>(prefix: string) => lines.filter((l) => l.startsWith(`{"type":"${prefix}"`)).flatMap((l) => {
    try {
      return [JSON.parse(l) as T];
    } catch {
      return [];
    }
  });
  const header = parse<HeaderRecord>('trace')[0];
  if (!header) return undefined;
  const ends = parse<EndRecord>('end');
  const runs = parse<RunRecord>('run').map((r) => {
    const end = ends.find((e) => e.run === r.run);
    return { spec: r.spec, steps: end?.steps, truncated: end?.truncated ?? false };
  });
  return { file, bytes: fs.statSync(file).size, model: header.model, runs };
}

function describe(t: TraceListing): string {
  const runs = t.runs.map((r) => `${r.spec} (${r.steps === undefined ? 'unfinished' : `${r.steps} steps${r.truncated ? ', truncated' : ''}`})`);
  return `${t.model}, ${(t.bytes / 2 ** 20).toFixed(1)} MB: ${runs.join(' vs ')}`;
}

/** A Markdown section listing the traces with the command that opens each in the viewer. */
export function tracesMarkdown(traces: readonly TraceListing[]): string {
  if (traces.length === 0) return '';
  const items = traces.map((t) => `- \`${t.file}\` — ${describe(t)}; open with \`kvpack view ${t.file}\``);
  return ['', '## Cache traces', '', ...items, ''].join('\n');
}

/** The same as an HTML section; the link works while `kvpack view` serves the trace (default port). */
export function tracesHtml(traces: readonly TraceListing[]): string {
  if (traces.length === 0) return '';
  const items = traces.map((t) => `<li><code>${esc(t.file)}</code> — ${esc(describe(t))}; run <code>kvpack view ${esc(t.file)}</code>, then open <a href="http://127.0.0.1:${DEFAULT_VIEW_PORT}/">the viewer</a></li>`);
  return ['<section id="traces">', '<h2>Cache traces</h2>', '<ul>', ...items, '</ul>', '</section>'].join('\n');
}
