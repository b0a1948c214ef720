import { formatBytes } from '../util/progress.js';
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
}

/** The baseline the Δ columns compare against. */
export const BASELINE = 'full';

/**
 * Groups rows by (model fingerprint, task, parameters); in each group the last row of a cache spec
 * wins (a re-run supersedes), the full cache comes first and the others keep the order they ran in.
 */
export function buildTables(rows: readonly ResultRow[]): ReportTable[] {
  const groups = new Map<string, ResultRow[]>();
  for (const row of rows) {
    const id = `${row.model_fingerprint}\0${row.task}\0${canonicalParams(row.params)}`;
    const group = groups.get(id) ?? [];
    const same = group.findIndex((r) => r.cache === row.cache);
    if (same >= 0) group[same] = row;
    else group.push(row);
    groups.set(id, group);
  }
  return [...groups.values()].map((group) => {
    const ordered = [...group.filter((r) => r.cache === BASELINE), ...group.filter((r) => r.cache !== BASELINE)];
    return table(ordered);
  });
}

function table(rows: ResultRow[]): ReportTable {
  const first = rows[0]!;
  const metrics = metricColumns(first.task, rows);
  const base = rows.find((r) => r.cache === BASELINE);
  const columns: ReportColumn[] = [{ header: 'cache', align: 'left' }];
  for (const m of metrics) {
    columns.push({ header: m.header, align: 'right' });
    if (m.delta && base) columns.push({ header: `Δ% vs ${BASELINE}`, align: 'right' });
  }
  columns.push(
    { header: 'KV bytes peak', align: 'right' },
    { header: 'bytes/token', align: 'right' },
    { header: 'compression ×', align: 'right' },
    { header: 'bits/value', align: 'right' },
  );
  return {
    title: `${first.model} · ${first.task} · ${Object.entries(first.params).map(([k, v]) => `${k}=${v}`).join(' ')}`,
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
      cells.push(
        numberCell(r.kv_bytes_peak, formatBytes),
        numberCell(r.kv_bytes_per_token, formatBytes),
        numberCell(r.compression, (x) => `${x.toFixed(2)}×`),
        numberCell(r.bits_per_value, (x) => String(Number(x.toFixed(2)))),
      );
      return { cache: r.cache, cells };
    }),
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
export function renderMarkdown(tables: readonly ReportTable[], sources: readonly { file: string; rows: number }[] = []): string {
  const out = ['# kvpack results', ''];
  if (sources.length) {
    out.push(`From ${sources.map((s) => `\`${s.file}\` (${s.rows} rows)`).join(', ')}.`, '');
  }
  if (tables.length === 0) out.push('No results yet.', '');
  for (const t of tables) {
    out.push(`## ${escape(t.title)}`, '');
    out.push(`| ${t.columns.map((c) => escape(c.header)).join(' | ')} |`);
    out.push(`|${t.columns.map((c) => (c.align === 'right' ? '---:' : ':---')).join('|')}|`);
    for (const r of t.rows) {
      const cells = r.cells.map((c, i) => (i === 0 ? `\`${escape(c.text)}\`` : escape(c.text)));
      out.push(`| ${cells.join(' | ')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

function escape(text: string): string {
  return text.replace(/\|/g, '\\|');
}
