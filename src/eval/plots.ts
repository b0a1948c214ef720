import { parseSpec } from '../cache/registry.js';
import { formatBytes } from '../util/progress.js';
import { readGrid } from './retrieval.js';
import type { ResultRow } from './store.js';

/**
 * The report's plots as standalone SVG strings (no charting library, nothing external): the page
 * inlines them and the PNGs are screenshots of the same elements. Every plot has an id the browser
 * test looks for, and every series is a <path> or <rect> with data-* attributes naming it.
 */

export interface Plot {
  id: string;
  title: string;
  /** One line under the title saying what is plotted. */
  caption: string;
  svg: string;
}

/** Fixed colours per policy, so a method looks the same in every plot. */
const POLICY_ORDER = ['full', 'window', 'h2o', 'scissorhands', 'tova', 'snapkv', 'random', 'knorm', 'qhitter'];
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];
const W = 640;
const H = 380;
const M = { left: 64, right: 170, top: 18, bottom: 48 };

export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 150);
}

/**
 * A cache's family, one line per family: the policy with its codec name (its points are budgets, or
 * bit widths for the full cache); the float codecs of the full cache share one line.
 */
export function family(cache: string): string {
  try {
    const spec = parseSpec(cache);
    const codec = spec.codec.name === 'fp32' || spec.codec.name === 'fp16' ? (spec.policy.name === 'full' ? 'float' : spec.codec.name) : spec.codec.name;
    return `${spec.policy.name}+${codec}`;
  } catch {
    return cache; // a spec this build no longer parses still gets its own line
  }
}

/** The budget as a fraction of the prompt (window: its recent part); undefined for counts or the full cache. */
export function budgetFraction(cache: string): number | undefined {
  try {
    const p = parseSpec(cache).policy;
    const b = p.name === 'window' ? p.params.recent : p.params.budget;
    return typeof b === 'number' && b > 0 && b <= 1 ? b : undefined;
  } catch {
    return undefined;
  }
}

function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= step0) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const f of [1, 2, 5]) {
      const v = f * 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
  }
  return out.length >= 2 ? out : [lo, hi];
}

/** Powers of two in [lo, hi]: byte counts read better as 512 B, 1 KiB, 2 KiB. */
function pow2Ticks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.ceil(Math.log2(lo)); 2 ** e <= hi; e++) out.push(2 ** e);
  return out.length >= 2 ? out : logTicks(lo, hi);
}

function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1000 || a < 0.001) return v.toExponential(1);
  return String(Number(v.toPrecision(3)));
}

interface Series {
  name: string;
  points: { x: number; y: number; label: string }[];
  color?: string;
  dash?: string;
}

function seriesStyle(name: string, index: number): { color: string; dash?: string } {
  const [policy, codec] = name.split('+');
  const k = POLICY_ORDER.indexOf(policy ?? '');
  const color = PALETTE[(k >= 0 ? k : POLICY_ORDER.length + index) % PALETTE.length]!;
  // float codecs are solid lines; quantized ones dashed, one pattern per codec
  const dashes: Record<string, string> = { int: '6 3', kvquant: '2 2' };
  return { color, dash: codec === undefined || codec === 'fp16' || codec === 'fp32' || codec === 'float' ? undefined : dashes[codec] ?? '8 2 2 2' };
}

interface LineChart {
  id: string;
  xLabel: string;
  yLabel: string;
  xLog: boolean;
  xFormat: (v: number) => string;
  /** Log x ticks at powers of two (byte counts) instead of 1-2-5. */
  xPow2?: boolean;
  series: Series[];
  /** Horizontal baseline lines (the full cache). */
  refs?: { y: number; label: string }[];
}

function lineChart(c: LineChart): string {
  const xs = c.series.flatMap((s) => s.points.map((p) => p.x));
  const ys = [...c.series.flatMap((s) => s.points.map((p) => p.y)), ...(c.refs ?? []).map((r) => r.y)];
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  // a wide positive range (one bad method) would flatten the rest: use a log axis then
  const yLog = y0 > 0 && y1 / y0 > 4;
  if (c.xLog) {
    [x0, x1] = [x0 / 1.25, x1 * 1.25];
  } else {
    const pad = (x1 - x0) * 0.05 || Math.abs(x0) * 0.1 || 1;
    [x0, x1] = [x0 - pad, x1 + pad];
  }
  if (yLog) {
    [y0, y1] = [y0 / 1.1, y1 * 1.1];
  } else {
    const ypad = (y1 - y0) * 0.08 || Math.abs(y0) * 0.05 || 1;
    [y0, y1] = [y0 - ypad, y1 + ypad];
  }
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (v: number): number => M.left + (c.xLog ? Math.log(v / x0) / Math.log(x1 / x0) : (v - x0) / (x1 - x0)) * pw;
  const sy = (v: number): number => M.top + (1 - (yLog ? Math.log(v / y0) / Math.log(y1 / y0) : (v - y0) / (y1 - y0))) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" id="${c.id}" class="plot" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#fff"/>`);
  // grid and axes
  for (const t of c.xLog ? (c.xPow2 ? pow2Ticks(x0, x1) : logTicks(x0, x1)) : niceTicks(x0, x1)) {
    const x = sx(t).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${M.top}" y2="${M.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x}" y="${M.top + ph + 14}" text-anchor="middle" fill="#333">${esc(c.xFormat(t))}</text>`);
  }
  for (const t of yLog ? logTicks(y0, y1) : niceTicks(y0, y1)) {
    const y = sy(t).toFixed(1);
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    out.push(`<text x="${M.left - 6}" y="${y}" dy="0.32em" text-anchor="end" fill="#333">${esc(fmt(t))}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle" fill="#000">${esc(c.xLabel)}</text>`);
  out.push(`<text transform="translate(14 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#000">${esc(yLog ? `${c.yLabel} (log)` : c.yLabel)}</text>`);
  for (const r of c.refs ?? []) {
    const y = sy(r.y).toFixed(1);
    out.push(`<line class="ref" x1="${M.left}" x2="${M.left + pw}" y1="${y}" y2="${y}" stroke="#000" stroke-dasharray="4 3"><title>${esc(`${r.label}: ${fmt(r.y)}`)}</title></line>`);
  }
  c.series.forEach((s, i) => {
    const { color, dash } = seriesStyle(s.name, i);
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    const d = pts.map((p, j) => `${j ? 'L' : 'M'}${sx(p.x).toFixed(1)} ${sy(p.y).toFixed(1)}`).join(' ');
    out.push(`<path class="series" data-series="${esc(s.name)}" d="${d}" fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    for (const p of pts) {
      out.push(`<circle cx="${sx(p.x).toFixed(1)}" cy="${sy(p.y).toFixed(1)}" r="3.5" fill="${color}"><title>${esc(`${p.label}: ${fmt(p.y)}`)}</title></circle>`);
    }
    const ly = M.top + 8 + i * 16;
    out.push(`<line x1="${W - M.right + 12}" x2="${W - M.right + 32}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    out.push(`<text x="${W - M.right + 38}" y="${ly}" dy="0.32em" fill="#000">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

/** Rows of one experiment (model × task × params); the last row of a cache wins. */
export interface Experiment {
  title: string;
  /** Short, unique within a report: model file name, task, parameter values (ids and PNG names). */
  key: string;
  model: string;
  task: string;
  rows: ResultRow[];
}

function groupSeries(rows: ResultRow[], x: (r: ResultRow) => number | undefined, y: (r: ResultRow) => number | undefined): Series[] {
  const byFamily = new Map<string, Series>();
  for (const r of rows) {
    const xv = x(r);
    const yv = y(r);
    if (xv === undefined || yv === undefined || !Number.isFinite(xv) || !Number.isFinite(yv)) continue;
    const name = family(r.cache);
    const s = byFamily.get(name) ?? { name, points: [] };
    s.points.push({ x: xv, y: yv, label: r.cache });
    byFamily.set(name, s);
  }
  return [...byFamily.values()];
}

/** Quality against KV bytes per token, log x, one line per family: the Pareto view. */
export function paretoPlot(e: Experiment, metric: string, yLabel: string): Plot | undefined {
  const series = groupSeries(e.rows, (r) => (r.memory.kv_bytes_per_token > 0 ? r.memory.kv_bytes_per_token : undefined), (r) => r.metrics[metric]);
  if (series.length === 0) return undefined;
  const id = `pareto-${slug(`${e.key}-${metric}`)}`;
  return {
    id,
    title: `${yLabel} vs KV bytes per token — ${e.title}`,
    caption: 'Lower left is better. x: KV cache bytes per token held once compressed (log scale); one line per policy+codec, points are budgets; the full cache in each codec is one line.',
    svg: lineChart({ id, xLabel: 'KV bytes per token (log)', yLabel, xLog: true, xPow2: true, xFormat: formatBytes, series }),
  };
}

/** A metric against the budget fraction, one line per family, the full cache as a dashed line. */
export function budgetPlot(e: Experiment, metric: string, yLabel: string): Plot | undefined {
  const series = groupSeries(e.rows.filter((r) => budgetFraction(r.cache) !== undefined), (r) => budgetFraction(r.cache), (r) => r.metrics[metric]);
  if (series.length === 0) return undefined;
  const refs = e.rows.filter((r) => family(r.cache) === 'full+float' && r.metrics[metric] !== undefined).map((r) => ({ y: r.metrics[metric]!, label: r.cache }));
  const id = `budget-${slug(`${e.key}-${metric}`)}`;
  return {
    id,
    title: `${yLabel} vs budget — ${e.title}`,
    caption: 'x: tokens kept as a fraction of the prompt (window: its recent part); dashed: the full cache.',
    svg: lineChart({ id, xLabel: 'budget (fraction of the prompt)', yLabel, xLog: false, xFormat: fmt, series, refs }),
  };
}

/** Perplexity per window of positions (metrics ppl_w0, ppl_w1, …), one line per cache: flat is good. */
export function windowPlot(e: Experiment, windowSize: number): Plot | undefined {
  const series: Series[] = [];
  for (const r of e.rows) {
    const points = Object.entries(r.metrics)
      .filter(([k]) => /^ppl_w\d+$/.test(k))
      .map(([k, y]) => ({ x: (Number(k.slice(5)) + 1) * windowSize, y, label: `${r.cache} ${k}` }));
    if (points.length > 1) series.push({ name: r.cache, points });
  }
  if (series.length === 0) return undefined;
  const id = `windows-${slug(e.key)}`;
  return {
    id,
    title: `perplexity per ${windowSize}-token window — ${e.title}`,
    caption: 'x: position in the sequence (end of each window); y: perplexity of that window. A line that stays flat past the trained context means the cache streams.',
    svg: lineChart({ id, xLabel: 'position (tokens)', yLabel: 'perplexity', xLog: false, xFormat: fmt, series }),
  };
}

/** One small accuracy heatmap (rows: lengths, columns: depths) per cache, side by side. */
export function heatmapPlot(e: Experiment): Plot | undefined {
  const cells = e.rows.map((r) => ({ cache: r.cache, grid: readGrid(r.metrics) })).filter((c) => c.grid.acc.size > 0);
  if (cells.length === 0) return undefined;
  const lengths = [...new Set(cells.flatMap((c) => c.grid.lengths))].sort((a, b) => a - b);
  const depths = [...new Set(cells.flatMap((c) => c.grid.depths))].sort((a, b) => a - b);
  const cw = 22;
  const ch = 16;
  const left = 44;
  const top = 30;
  const panelW = Math.max(left + depths.length * cw + 16, 210); // room for a cache spec as the title
  const panelH = top + lengths.length * ch + 34;
  const perRow = Math.max(1, Math.floor(1000 / panelW));
  const rowsN = Math.ceil(cells.length / perRow);
  const width = Math.min(cells.length, perRow) * panelW + 10;
  const height = rowsN * panelH + 30;
  const id = `heatmap-${slug(e.key)}`;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" id="${id}" class="plot heatmap" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" font-family="sans-serif" font-size="10">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`);
  cells.forEach((c, i) => {
    const ox = (i % perRow) * panelW + 6;
    const oy = Math.floor(i / perRow) * panelH;
    out.push(`<g class="panel" data-cache="${esc(c.cache)}" transform="translate(${ox} ${oy})">`);
    out.push(`<text x="4" y="12" font-weight="bold">${esc(c.cache.length > 30 ? `${c.cache.slice(0, 29)}…` : c.cache)}<title>${esc(c.cache)}</title></text>`);
    lengths.forEach((L, li) => {
      out.push(`<text x="${left - 4}" y="${top + li * ch + ch / 2}" dy="0.32em" text-anchor="end">${L}</text>`);
      depths.forEach((d, di) => {
        const v = c.grid.acc.get(`${L},${d}`);
        const fill = v === undefined ? '#ddd' : heat(v);
        out.push(`<rect class="cell" x="${left + di * cw}" y="${top + li * ch}" width="${cw - 1}" height="${ch - 1}" fill="${fill}"><title>${esc(`${c.cache} L=${L} depth=${d}%: ${v === undefined ? 'not run' : v.toFixed(2)}`)}</title></rect>`);
      });
    });
    depths.forEach((d, di) => {
      out.push(`<text x="${left + di * cw + cw / 2}" y="${top + lengths.length * ch + 11}" text-anchor="middle">${d}</text>`);
    });
    out.push(`<text x="${left + (depths.length * cw) / 2}" y="${top + lengths.length * ch + 24}" text-anchor="middle" fill="#555">depth %</text>`);
    out.push('</g>');
  });
  // legend: 0 → 1
  for (let k = 0; k <= 10; k++) out.push(`<rect x="${10 + k * 18}" y="${height - 20}" width="18" height="10" fill="${heat(k / 10)}"/>`);
  out.push(`<text x="${10 + 11 * 18 + 6}" y="${height - 11}">accuracy 0 → 1 (rows: prompt length in tokens)</text>`);
  out.push('</svg>');
  return {
    id,
    title: `${e.task} accuracy by length and depth — ${e.title}`,
    caption: 'One panel per cache; rows: prompt length (tokens), columns: depth of the key/needle (%); colour: accuracy over the trials.',
    svg: out.join('\n'),
  };
}

/** Accuracy 0 → 1 as red → yellow → green. */
function heat(v: number): string {
  const t = Math.max(0, Math.min(1, v));
  const r = Math.round(t < 0.5 ? 215 : 215 - (t - 0.5) * 2 * 170);
  const g = Math.round(t < 0.5 ? 48 + t * 2 * 150 : 198 - (t - 0.5) * 2 * 20);
  return `rgb(${r},${g},${t < 0.5 ? 39 : 60})`;
}

/** ROUGE-1/2/L F1 as grouped bars, one group per cache. */
export function rougePlot(e: Experiment): Plot | undefined {
  const rows = e.rows.filter((r) => r.metrics.rouge1 !== undefined);
  if (rows.length === 0) return undefined;
  const metrics = [['rouge1', 'ROUGE-1'], ['rouge2', 'ROUGE-2'], ['rougeL', 'ROUGE-L']] as const;
  const groupW = 3 * 9 + 8;
  const left = 48;
  const top = 28;
  const ph = 200;
  const bottom = 150;
  const width = left + rows.length * groupW + 20;
  const height = top + ph + bottom;
  const max = Math.max(0.05, ...rows.flatMap((r) => metrics.map(([m]) => r.metrics[m] ?? 0)));
  const yMax = niceTicks(0, max * 1.05).at(-1)! >= max ? niceTicks(0, max * 1.05).at(-1)! : max * 1.1;
  const sy = (v: number): number => top + ph - (v / yMax) * ph;
  const id = `rouge-${slug(e.key)}`;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" id="${id}" class="plot bars" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" font-family="sans-serif" font-size="10">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`);
  for (const t of niceTicks(0, yMax)) {
    out.push(`<line x1="${left}" x2="${width - 10}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${left - 5}" y="${sy(t).toFixed(1)}" dy="0.32em" text-anchor="end">${fmt(t)}</text>`);
  }
  metrics.forEach(([, label], k) => {
    out.push(`<rect x="${left + k * 80}" y="6" width="10" height="10" fill="${PALETTE[k]}"/><text x="${left + k * 80 + 14}" y="15">${label} F1</text>`);
  });
  rows.forEach((r, i) => {
    const gx = left + i * groupW + 4;
    metrics.forEach(([m], k) => {
      const v = r.metrics[m] ?? 0;
      const y = sy(v);
      out.push(`<rect class="bar" data-cache="${esc(r.cache)}" data-metric="${m}" x="${gx + k * 9}" y="${y.toFixed(1)}" width="8" height="${(top + ph - y).toFixed(1)}" fill="${PALETTE[k]}"><title>${esc(`${r.cache} ${m}: ${v.toFixed(4)}`)}</title></rect>`);
    });
    out.push(`<text transform="translate(${gx + 14} ${top + ph + 8}) rotate(50)" font-size="9">${esc(r.cache.length > 30 ? `${r.cache.slice(0, 29)}…` : r.cache)}</text>`);
  });
  out.push(`<line x1="${left}" x2="${width - 10}" y1="${top + ph}" y2="${top + ph}" stroke="#999"/>`);
  out.push('</svg>');
  return {
    id,
    title: `XSum ROUGE F1 — ${e.title}`,
    caption: 'Mean ROUGE-1/2/L F1 (rouge-score semantics, Porter stemming) of the generated summaries against the reference, per cache.',
    svg: out.join('\n'),
  };
}
