/** A result table every bench section produces: printed as Markdown, or emitted as JSON. */

export type Cell = string | number | null;

export interface Column {
  key: string;
  header: string;
  /** Numbers are right-aligned by default, text left. */
  align?: 'left' | 'right';
  /** How a number prints (default: `formatNumber`). */
  format?: (v: number) => string;
}

export interface Table {
  title: string;
  columns: Column[];
  rows: Record<string, Cell>[];
  /** Lines printed under the table (method, caveats). */
  notes?: string[];
}

/** 3 significant digits at most, no exponent: 1234 → '1234', 12.345 → '12.3', 0.4567 → '0.457'. */
export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  if (abs >= 100) return v.toFixed(0);
  if (abs >= 10) return v.toFixed(1);
  if (abs >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

/** a / b as a cell: empty where either is missing. */
export function ratioCell(a: number | null | undefined, b: number | null | undefined): Cell {
  return a != null && b != null ? a / b : null;
}

/** A ratio printed as '0.93×'. */
export function formatRatio(v: number): string {
  return `${v.toFixed(2)}×`;
}

/** A share printed as '71%'. */
export function formatShare(v: number): string {
  return `${(v * 100).toFixed(0)}%`;
}

function cellText(col: Column, v: Cell | undefined): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'number') return (col.format ?? formatNumber)(v);
  // A pipe would end the cell early.
  return v.replace(/\|/g, '\\|');
}

/** GitHub-flavoured Markdown, columns padded so the raw text reads as a table too. */
export function renderMarkdown(t: Table): string {
  const cells = t.rows.map((r) => t.columns.map((c) => cellText(c, r[c.key])));
  const widths = t.columns.map((c, i) => Math.max(3, c.header.length, ...cells.map((row) => row[i]!.length)));
  const right = t.columns.map((c, i) => (c.align ? c.align === 'right' : t.rows.some((r) => typeof r[c.key] === 'number') || cells.every((row) => row[i] === '—')));
  const pad = (s: string, i: number): string => (right[i] ? s.padStart(widths[i]!) : s.padEnd(widths[i]!));
  const line = (parts: string[]): string => `| ${parts.join(' | ')} |`;
  const out = [`### ${t.title}`, '', line(t.columns.map((c, i) => pad(c.header, i)))];
  out.push(line(widths.map((w, i) => (right[i] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w)))));
  for (const row of cells) out.push(line(row.map((s, i) => pad(s, i))));
  if (t.notes?.length) out.push('', ...t.notes.map((n) => `- ${n}`));
  return out.join('\n') + '\n';
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
