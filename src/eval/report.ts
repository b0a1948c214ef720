import { BASELINE_CODEC } from '../cache/kvcache.js';
import { parseSpec } from '../cache/registry.js';
import { modelName } from '../model/identity.js';
import { formatBytes } from '../util/progress.js';
import { budgetPlot, esc, family, heatmapPlot, paretoPlot, rougePlot, Styles, windowPlot, type Experiment, type Plot } from './plots.js';
import type { ResultRow, TaskParams } from './store.js';
import { TASKS, type MetricColumn } from './tasks.js';

/**
 * Result rows → tables, independent of how they are drawn: each cell keeps its number beside its
 * text, so an HTML page or a plot can be made from the same tables as the Markdown.
 */
export interface ReportCell {
  text: string;
  value?: number;
}

export interface ReportColumn {
  header: string;
  align: 'left' | 'right';
}

/** One experiment: a model, a task and its parameters; one row per cache spec. */
export interface ReportTable {
  title: string;
  model: string;
  model_fingerprint: string;
  task: string;
  params: TaskParams;
  columns: ReportColumn[];
  rows: { cache: string; cells: ReportCell[] }[];
  /** Footnotes shown under the table. */
  notes: string[];
}

/** Marks per-token bytes and compression that old rows computed from the transient peak. */
const FROM_PEAK = '†';

/**
 * The row the Δ columns compare against: an uncompressed cache of the run, the full fp16 cache
 * (`full`, the compression baseline) before `full+fp32`.
 */
export function baselineRow(rows: readonly ResultRow[]): ResultRow | undefined {
  const codecOf = (r: ResultRow): string | undefined => {
    try {
      const spec = parseSpec(r.cache);
      return spec.policy.name === 'full' ? spec.codec.name : undefined;
    } catch {
      return undefined; // a spec this build no longer reads is no baseline
    }
  };
  return rows.find((r) => codecOf(r) === BASELINE_CODEC) ?? rows.find((r) => codecOf(r) === 'fp32');
}

/**
 * Groups rows by (store, model fingerprint, task, parameters), so each store's plan gets its own plots
 * (a store NAME-seedK holds another sampling seed of NAME's plan and joins it). In each group the last
 * row of a (cache, seed) wins (a re-run supersedes); several seeds of a cache are averaged. The full
 * cache comes first and the others keep the order they ran in.
 */
export function buildTables(rows: readonly ResultRow[]): ReportTable[] {
  return groupRows(rows).map((g) => table(g.rows));
}

interface Group {
  /** One row per cache (the mean over its seeds). */
  rows: ResultRow[];
  /** Every seed's row. */
  seedRows: ResultRow[];
}

function groupRows(rows: readonly ResultRow[]): Group[] {
  const groups = new Map<string, ResultRow[]>();
  for (const row of rows) {
    const id = `${storeFamily(row.store)}\0${row.model_fingerprint}\0${row.task}\0${canonicalParams(row.params)}`;
    const group = groups.get(id) ?? [];
    const same = group.findIndex((r) => r.cache === row.cache && r.seed === row.seed);
    if (same >= 0) group[same] = row;
    else group.push(row);
    groups.set(id, group);
  }
  return [...groups.values()].map((group) => {
    const caches = [...new Set(group.map((r) => r.cache))];
    const first = baselineRow(group)?.cache;
    const ordered = [...caches.filter((c) => c === first), ...caches.filter((c) => c !== first)];
    return { rows: ordered.map((c) => meanOverSeeds(group.filter((r) => r.cache === c))), seedRows: group };
  });
}

/** The store a row joins: its file name, less a `-seedK` suffix. */
function storeFamily(store: string | undefined): string {
  return store === undefined ? '' : store.replace(/\\/g, '/').split('/').pop()!.replace(/(-seed\d+)?\.jsonl$/, '');
}

/** One row standing for a cache's seeds: each metric averaged (one seed: the row itself). */
function meanOverSeeds(rows: ResultRow[]): ResultRow {
  if (rows.length === 1) return rows[0]!;
  const metrics: Record<string, number> = {};
  for (const k of new Set(rows.flatMap((r) => Object.keys(r.metrics)))) {
    const vs = rows.map((r) => r.metrics[k]).filter((v): v is number => v !== undefined);
    metrics[k] = vs.reduce((a, b) => a + b, 0) / vs.length;
  }
  return { ...rows.at(-1)!, metrics, seeds: rows.length };
}

function experimentTitle(r: ResultRow): string {
  const store = storeFamily(r.store);
  return `${modelName(r.model)} · ${r.task} · ${Object.entries(r.params).map(([k, v]) => `${k}=${v}`).join(' ')}${store ? ` · ${store}` : ''}`;
}

const GRID_TASKS = ['passkey', 'needle', 'multikey'];

/** A retrieval grid where even the full cache never answers: nothing to compare, said once instead of plotted. */
function fullScoresZero(rows: readonly ResultRow[]): boolean {
  const full = baselineRow(rows);
  return GRID_TASKS.includes(rows[0]!.task) && full?.metrics.accuracy === 0;
}

/** The plots of one experiment: which ones depend on the task. */
export function experimentPlots(rows: ResultRow[], seedRows: ResultRow[] = rows, styles = new Styles().register(rows.map((r) => family(r.cache)))): Plot[] {
  const first = rows[0]!;
  const store = storeFamily(first.store);
  const key = [modelName(first.model), first.task, ...Object.values(first.params).map(String), ...(store ? [store] : [])].join('-');
  const e: Experiment = { title: experimentTitle(first), key, model: first.model, task: first.task, rows, seedRows, styles };
  if (fullScoresZero(rows)) return [];
  const plots: (Plot | undefined)[] = [];
  switch (first.task) {
    case 'ppl':
      plots.push(paretoPlot(e, 'ppl', 'perplexity'), budgetPlot(e, 'ppl', 'perplexity'));
      if (typeof first.params.window === 'number') plots.push(windowPlot(e, first.params.window));
      break;
    case 'fidelity':
      plots.push(paretoPlot(e, 'kl', 'KL(full+fp32 ‖ cache), nats'), budgetPlot(e, 'kl', 'KL(full+fp32 ‖ cache), nats'), budgetPlot(e, 'top1', 'top-1 agreement'));
      break;
    case 'passkey':
    case 'needle':
    case 'multikey':
      plots.push(heatmapPlot(e), budgetPlot(e, 'accuracy', 'accuracy'));
      break;
    case 'copy':
      plots.push(budgetPlot(e, 'ratio', 'NLL of the repeat / NLL of the first occurrence'));
      break;
    case 'xsum':
      plots.push(rougePlot(e), paretoPlot(e, 'rouge1', 'ROUGE-1 F1'));
      break;
    default:
      break;
  }
  return plots.filter((p): p is Plot => p !== undefined);
}

export interface ReportSection {
  table: ReportTable;
  plots: Plot[];
}

/** Every experiment's table and plots, in the order of buildTables; a method is drawn alike in all of them. */
export function buildSections(rows: readonly ResultRow[]): ReportSection[] {
  const styles = new Styles().register(rows.map((r) => family(r.cache)));
  return groupRows(rows).map((group) => ({ table: table(group.rows), plots: experimentPlots(group.rows, group.seedRows, styles) }));
}

/**
 * The self-contained HTML page: inline CSS and SVG, nothing fetched. Each experiment is a section
 * with its plots (figures with ids) and its table.
 */
export function renderHtml(sections: readonly ReportSection[], sources: readonly { file: string; rows: number }[] = []): string {
  const out: string[] = [];
  out.push('<!doctype html>', '<html lang="en">', '<head>', '<meta charset="utf-8">', '<title>kvpack results</title>');
  out.push(`<style>
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #111; padding: 0 16px; }
h2 { margin-top: 40px; border-bottom: 1px solid #ccc; padding-bottom: 4px; font-size: 1.15em; }
figure { margin: 16px 0; overflow-x: auto; }
figcaption { font-size: 0.85em; color: #444; margin-top: 4px; }
figcaption b { color: #111; }
table { border-collapse: collapse; font-size: 0.85em; margin: 12px 0; }
th, td { border: 1px solid #ddd; padding: 3px 7px; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
td code { font-size: 0.95em; }
nav li { margin: 2px 0; }
p.note { font-size: 0.8em; color: #444; margin: 2px 0; }
</style>`);
  out.push('</head>', '<body>', '<h1>kvpack results</h1>');
  if (sources.length) out.push(`<p>From ${sources.map((s) => `<code>${esc(s.file)}</code> (${s.rows} rows)`).join(', ')}.</p>`);
  if (sections.length === 0) out.push('<p>No results yet.</p>');
  else {
    out.push('<nav><ul>');
    sections.forEach((s, i) => out.push(`<li><a href="#exp-${i}">${esc(s.table.title)}</a></li>`));
    out.push('</ul></nav>');
  }
  sections.forEach((s, i) => {
    out.push(`<section id="exp-${i}" data-task="${esc(s.table.task)}">`, `<h2>${esc(s.table.title)}</h2>`);
    for (const p of s.plots) {
      out.push(`<figure data-plot="${p.id}">`, p.svg, `<figcaption><b>${esc(p.title)}.</b> ${esc(p.caption)}</figcaption>`, '</figure>');
    }
    out.push('<table>', `<tr>${s.table.columns.map((c) => `<th class="${c.align === 'right' ? 'r' : ''}">${esc(c.header)}</th>`).join('')}</tr>`);
    for (const r of s.table.rows) {
      const cells = r.cells.map((c, j) => (j === 0 ? `<td><code>${esc(c.text)}</code></td>` : `<td class="${s.table.columns[j]?.align === 'right' ? 'r' : ''}">${esc(c.text)}</td>`));
      out.push(`<tr>${cells.join('')}</tr>`);
    }
    out.push('</table>', ...s.table.notes.map((n) => `<p class="note">${esc(n)}</p>`), '</section>');
  });
  out.push('</body>', '</html>', '');
  return out.join('\n');
}

function table(rows: ResultRow[]): ReportTable {
  const first = rows[0]!;
  const metrics = metricColumns(first.task, rows);
  const base = baselineRow(rows);
  const columns: ReportColumn[] = [{ header: 'cache', align: 'left' }];
  for (const m of metrics) {
    columns.push({ header: m.header, align: 'right' });
    if (m.delta && base) columns.push({ header: `Δ% vs ${base.cache}`, align: 'right' });
  }
  columns.push(
    { header: 'KV bytes held', align: 'right' },
    { header: 'bytes/token', align: 'right' },
    { header: `compression × vs ${BASELINE_CODEC}`, align: 'right' },
    { header: 'bits/value', align: 'right' },
    { header: 'transient peak', align: 'right' },
  );
  // a codec that says its bytes depend on more than its spec (kvquant staging f16 rows): the steady state too
  const atEnd = rows.some((r) => r.memory.note !== undefined && r.memory.kv_bytes_end !== undefined);
  if (atEnd) columns.push({ header: 'KV bytes at end', align: 'right' });
  const notes = [
    `KV bytes held: the most the cache holds once compressed; compression: the full ${BASELINE_CODEC} cache's bytes over them; transient peak: the step before eviction (a whole prompt before it is compressed).`,
  ];
  if (fullScoresZero(rows)) {
    notes.unshift(`The full cache (${baselineRow(rows)!.cache}) already scores 0 on every length and depth: ${modelName(first.model)} cannot retrieve at these lengths, so no cache is compared (no plots).`);
  }
  if (atEnd) notes.push('KV bytes at end: what the cache holds after the longest sequence, the steady state.');
  for (const note of new Set(rows.map((r) => r.memory.note).filter((n) => n !== undefined))) {
    const caches = rows.filter((r) => r.memory.note === note).map((r) => r.cache);
    notes.push(`${caches.join(', ')}: ${note}`);
  }
  const seeds = Math.max(...rows.map((r) => r.seeds ?? 1));
  if (seeds > 1) notes.push(`Metrics of a cache run with ${seeds} sampling seeds are their mean.`);
  if (rows.some((r) => r.memory.kv_bytes_held === undefined)) {
    notes.push(`${FROM_PEAK} row written before held bytes were recorded: bytes/token and compression are from the transient peak; rerun it to refresh.`);
  }
  return {
    title: experimentTitle(first),
    model: first.model,
    model_fingerprint: first.model_fingerprint,
    task: first.task,
    params: first.params,
    columns,
    rows: rows.map((r) => {
      const cells: ReportCell[] = [{ text: r.cache }];
      for (const m of metrics) {
        const v = r.metrics[m.metric];
        cells.push(numberCell(v, (x) => x.toFixed(m.digits)));
        if (m.delta && base) {
          const b = base.metrics[m.metric];
          if (r === base || v === undefined || b === undefined || b === 0) cells.push({ text: '—' });
          else cells.push(numberCell((100 * (v - b)) / b, (x) => `${x >= 0 ? '+' : ''}${x.toFixed(2)}%`));
        }
      }
      const mark = r.memory.kv_bytes_held === undefined ? ` ${FROM_PEAK}` : '';
      cells.push(
        numberCell(r.memory.kv_bytes_held, formatBytes),
        numberCell(r.memory.kv_bytes_per_token, (x) => formatBytes(x) + mark),
        numberCell(r.memory.compression, (x) => `${x.toFixed(2)}×${mark}`),
        numberCell(r.memory.bits_per_value, (x) => String(Number(x.toFixed(2)))),
        numberCell(r.memory.kv_bytes_peak, formatBytes),
      );
      if (atEnd) cells.push(numberCell(r.memory.kv_bytes_end, formatBytes));
      return { cache: r.cache, cells };
    }),
    notes,
  };
}

/** The task's declared columns; for a task this build does not know, every numeric metric. */
function metricColumns(task: string, rows: ResultRow[]): readonly MetricColumn[] {
  const known = TASKS.get(task)?.columns;
  if (known) return known;
  const names = [...new Set(rows.flatMap((r) => Object.keys(r.metrics)))];
  return names.map((metric) => ({ metric, header: metric, digits: 4 }));
}

function numberCell(value: number | undefined, format: (x: number) => string): ReportCell {
  return typeof value === 'number' && Number.isFinite(value) ? { text: format(value), value } : { text: '—' };
}

function canonicalParams(params: TaskParams): string {
  return JSON.stringify(Object.keys(params).sort().map((k) => [k, params[k]]));
}

/** Markdown: a heading, the stores read, then one table per experiment. */
export function renderMarkdown(
  tables: readonly ReportTable[],
  sources: readonly { file: string; rows: number }[] = [],
  /** Image files (relative to the Markdown file) shown above each table, by table index, each with its SVG if any. */
  images: readonly (readonly { file: string; title: string; svg?: string }[])[] = [],
): string {
  const out = ['# kvpack results', ''];
  if (sources.length) {
    out.push(`From ${sources.map((s) => `\`${s.file}\` (${s.rows} rows)`).join(', ')}.`, '');
  }
  if (tables.length === 0) out.push('No results yet.', '');
  for (const t of tables) {
    // the title carries the model's name: one line, with nothing Markdown or HTML would read as markup
    out.push(`## ${escape(t.title).replace(/[\r\n\t\v\f]+/g, ' ').replace(/[\\`*_[\]<>#!&]/g, '\\$&')}`, '');
    for (const img of images[tables.indexOf(t)] ?? []) out.push(`![${escape(img.title)}](${img.file})${img.svg ? ` ([SVG](${img.svg}))` : ''}`, '');
    out.push(`| ${t.columns.map((c) => escape(c.header)).join(' | ')} |`);
    out.push(`|${t.columns.map((c) => (c.align === 'right' ? '---:' : ':---')).join('|')}|`);
    for (const r of t.rows) {
      const cells = r.cells.map((c, i) => (i === 0 ? `\`${escape(c.text)}\`` : escape(c.text)));
      out.push(`| ${cells.join(' | ')} |`);
    }
    out.push('', ...t.notes.flatMap((n) => [escape(n), '']));
  }
  return out.join('\n');
}

function escape(text: string): string {
  return text.replace(/\|/g, '\\|');
}
