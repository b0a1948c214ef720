import { codecIsImplied, parseSpec } from '../cache/registry.js';
import { formatBytes } from '../util/progress.js';
import { readGrid } from './retrieval.js';
import type { ResultRow } from './store.js';

/**
 * The report's plots as standalone SVG strings (no charting library, nothing external): the page
 * inlines them and the PNGs are screenshots of the same elements. Every plot has an id the browser
 * test looks for, and every series is a <path> or <rect> with data-* attributes naming it.
 */

/** A plot's file (`<id>.svg`, `<id>.png`) by the ids the plots below give, so a report can drop stale ones. */
export const PLOT_FILE = /^(pareto|budget|windows|heatmap|rouge)-[a-z0-9-]+\.(svg|png)$/;

export interface Plot {
  id: string;
  title: string;
  /** One line under the title saying what is plotted. */
  caption: string;
  svg: string;
}

/**
 * Colours per policy, in POLICY_ORDER, so a method looks the same in every plot: the Okabe–Ito
 * palette (distinct under the common colour-vision deficiencies; its yellow darkened to read on white),
 * then three more; markers and dash patterns tell policies apart without colour too.
 */
const POLICY_ORDER = ['full', 'window', 'h2o', 'scissorhands', 'tova', 'snapkv', 'random', 'knorm', 'qhitter', 'expected', 'kvzip'];
const PALETTE = ['#000000', '#E69F00', '#0072B2', '#009E73', '#D55E00', '#56B4E9', '#CC79A7', '#9A8700', '#7F7F7F', '#44AA99', '#661100'];
/** Their markers, shapes no policy has. */
const FULL_CODEC_MARKER: Record<string, number> = { int: 7, kvquant: 9, bf16: 8, turboquant: 5 };
/** The full cache's quantising codecs (Tol's indigo, wine, purple, green): the codec is the method there. */
const FULL_CODEC_COLOR: Record<string, string> = { int: '#332288', kvquant: '#882255', bf16: '#AA4499', turboquant: '#117733' };
const W = 640;
const H = 380;
const M = { left: 64, right: 170, top: 18, bottom: 48 };

export function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 150);
}

/** The full cache in fp16 (the default) and fp32: one line of two points in a Pareto plot. */
export const FULL_FLOAT = 'full, full+fp32';

/** The parameters a Pareto line sweeps: its points differ in these (the budget, the bit width). */
const SWEPT = new Set(['budget', 'recent', 'bits', 'kbits', 'vbits']);

/**
 * A cache's family, one line per family: the canonical spec less the parameters a line sweeps (budget,
 * window's recent part, bit widths), and less its codec where the policy uses that codec anyway (`h2o` in
 * fp16, `qhitter` storing its own int codec); `h2o+fp32`, `full+kvquant(outliers=0)` and
 * `window(sinks=4)` are families of their own. The float codecs of the full cache share one line.
 */
export function family(cache: string): string {
  try {
    const spec = parseSpec(cache);
    if (spec.policy.name === 'full' && (spec.codec.name === 'fp32' || spec.codec.name === 'fp16')) return FULL_FLOAT;
    const part = (p: { name: string; params: Record<string, unknown> }): string => {
      const kept = Object.entries(p.params).filter(([k]) => !SWEPT.has(k));
      // a file (kvquant's calib) by its name: the folder is the same for all and only widens the legend
      const show = (v: unknown): string => (typeof v === 'string' ? v.replace(/\\/g, '/').split('/').pop()! : String(v));
      return kept.length ? `${p.name}(${kept.map(([k, v]) => `${k}=${show(v)}`).join(',')})` : p.name;
    };
    return codecIsImplied(spec) ? part(spec.policy) : `${part(spec.policy)}+${part(spec.codec)}`;
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

/** Tick and value labels: 10K and 2.5M rather than exponents; small values keep 3 significant digits. */
function fmt(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}K`;
  if (a >= 1000) return String(Math.round(v));
  if (a < 1e-4) return v.toExponential(0);
  return String(Number(v.toPrecision(3)));
}

interface Series {
  name: string;
  /** label: the cache spec (tooltips); tag: what the point is drawn labelled with (its budget), if anything. */
  points: { x: number; y: number; label: string; tag?: string }[];
}

/** Dash patterns: the first is solid. A policy has its own, shifted by its codec's (the default codec, fp16, shifts none). */
const DASHES = ['', '7 3', '2 2', '9 3 2 3', '12 4', '1 3', '5 2 1 2', '4 2 4 6'];
const CODEC_DASH: Record<string, number> = { fp16: 0, fp32: 1, int: 2, kvquant: 3, bf16: 4, turboquant: 5 };
/** Marker shapes: polygons by their number of corners and turn (0: a circle). */
const MARKERS: readonly (readonly [number, number])[] = [[0, 0], [4, 45], [3, 0], [4, 0], [3, 180], [5, 0], [6, 0], [3, 90], [5, 180], [3, 270], [6, 30]];

export interface SeriesStyle {
  color: string;
  /** stroke-dasharray, '' for a solid line. */
  dash: string;
  /** Index into the marker shapes. */
  marker: number;
}

/**
 * One style per method (a series name) for a whole report, so a method looks the same in every plot:
 * its policy's colour and marker (h2o is h2o whatever it stores), a dash from its policy and codec (so
 * two codecs of one policy differ, and so do lines that lie on top of each other), the next dash where
 * that look is taken. Register a report's names first (`register`) so the order plots happen to draw
 * them in decides nothing.
 */
export class Styles {
  private readonly byName = new Map<string, SeriesStyle>();
  private readonly used = new Set<string>();
  private readonly variants = new Map<string, number>();

  /** Assigns styles to names in a fixed order (byMethod's). */
  register(names: Iterable<string>): this {
    for (const n of [...new Set(names)].sort(byMethod)) this.of(n);
    return this;
  }

  of(name: string): SeriesStyle {
    const known = this.byName.get(name);
    if (known) return known;
    const k = policyIndex(name);
    const codec = codecOf(name);
    // the full cache in another codec: that codec is the method, and has a colour of its own
    const color = k === 0 && codec in FULL_CODEC_COLOR ? FULL_CODEC_COLOR[codec]! : PALETTE[k % PALETTE.length]!;
    // the v-th variant of a colour (h2o+fp32 beside h2o, kvquant's ablations): the next marker, and a dash
    // none of its colour has while dashes last
    const v = this.variants.get(color) ?? 0;
    this.variants.set(color, v + 1);
    let dash = k + (CODEC_DASH[codec] ?? 5) + Math.floor(v / MARKERS.length);
    for (let i = 0; this.used.has(`${color} ${dash % DASHES.length}`) && i < DASHES.length; i++) dash++;
    dash %= DASHES.length;
    this.used.add(`${color} ${dash}`);
    const mark = ((k === 0 ? FULL_CODEC_MARKER[codec] ?? 0 : k) + v) % MARKERS.length;
    const style = { color, dash: DASHES[dash]!, marker: mark };
    this.byName.set(name, style);
    return style;
  }
}

/** Methods in a fixed order, for legends and styles: by policy, then codec (the default first), then name. */
export function byMethod(x: string, y: string): number {
  const rank = (n: string): [number, number] => [policyIndex(n), CODEC_DASH[codecOf(n)] ?? 9];
  const [a, b] = [rank(x), rank(y)];
  return a[0] - b[0] || a[1] - b[1] || (x < y ? -1 : x > y ? 1 : 0);
}

function policyIndex(name: string): number {
  const k = POLICY_ORDER.indexOf(/^[a-z][a-z0-9]*/.exec(name)?.[0] ?? '');
  return k >= 0 ? k : POLICY_ORDER.length;
}

function codecOf(name: string): string {
  return name === FULL_FLOAT ? 'fp16' : /\+([a-z0-9]+)/.exec(name)?.[1] ?? 'fp16';
}

/** The styles of series names in one plot (a fresh Styles). */
export function seriesStyles(names: readonly string[]): SeriesStyle[] {
  const styles = new Styles();
  return names.map((n) => styles.of(n));
}

/** A marker centred on (x, y): white-edged, so points that overlap stay apart. */
function marker(x: number, y: number, s: SeriesStyle, inner = ''): string {
  const [corners, turn] = MARKERS[s.marker]!;
  const attrs = `class="marker" fill="${s.color}" stroke="#fff" stroke-width="0.8"`;
  if (corners === 0) return `<circle ${attrs} cx="${x.toFixed(1)}" cy="${y.toFixed(1)}" r="3.6">${inner}</circle>`;
  const r = corners === 3 ? 5 : 4.6;
  const pts = Array.from({ length: corners }, (_, i) => {
    const a = ((turn + (360 * i) / corners) * Math.PI) / 180;
    return `${(x + r * Math.sin(a)).toFixed(1)},${(y - r * Math.cos(a)).toFixed(1)}`;
  });
  return `<polygon ${attrs} points="${pts.join(' ')}">${inner}</polygon>`;
}

/** A legend entry, naming the series it stands for: its swatch and label, with the style the browser test compares. */
function legendItem(x: number, y: number, s: SeriesStyle, label: string, swatch: 'line' | 'box', withMarker = true, lines = [label]): string {
  const mark = swatch === 'line'
    ? `<line x1="${x}" x2="${x + 26}" y1="${y}" y2="${y}" stroke="${s.color}" stroke-width="2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>${withMarker ? marker(x + 13, y, s) : ''}`
    : `<rect x="${x + 6}" y="${y - 5}" width="10" height="10" fill="${s.color}"/>`;
  return `<g class="legend-item" data-series="${esc(label)}" data-style="${s.color} ${s.dash || 'solid'}">${mark}<text x="${x + 32}" y="${y}" dy="0.32em" fill="#000">${lines.length > 1 ? tspans(lines, x + 32, 13) : esc(label)}</text></g>`;
}

/** A label cut into lines of at most `width` characters, after commas, plus signs and parentheses. */
export function wrap(label: string, width: number): string[] {
  const pieces = label.split(/(?<=[,+(])/);
  const lines: string[] = [];
  for (const piece of pieces) {
    if (lines.length && lines.at(-1)!.length + piece.length <= width) lines[lines.length - 1] += piece;
    else lines.push(piece);
  }
  return lines;
}

/** SVG text lines (tspans) of a wrapped label. */
function tspans(lines: readonly string[], x: number, lineHeight: number): string {
  return lines.map((l, i) => `<tspan x="${x}" dy="${i ? lineHeight : 0}">${esc(l)}</tspan>`).join('');
}

/** Roughly how wide a label is at 11px sans-serif. */
const textWidth = (text: string): number => text.length * 6.3;

/**
 * Small labels beside points (a Pareto point's budget), placed greedily: the first of four spots
 * around the point that overlaps no label already placed and stays in the plot. A label whose text is
 * already shown right there (one budget of several methods at one size) is drawn once.
 */
class PointLabels {
  private readonly boxes: { x0: number; x1: number; y0: number; y1: number; text: string }[] = [];
  private readonly out: string[] = [];

  constructor(private readonly left: number, private readonly right: number, private readonly top: number, private readonly bottom: number) {}

  add(x: number, y: number, text: string): void {
    const w = textWidth(text) * 0.82;
    const h = 9;
    const spots = [[6, -4], [6, 4 + h], [-6 - w, -4], [-6 - w, 4 + h]].map(([dx, dy]) => ({ x0: x + dx!, x1: x + dx! + w, y1: y + dy!, y0: y + dy! - h }));
    const near = (b: { x0: number; y0: number }, o: { x0: number; y0: number }): boolean => Math.abs(b.x0 - o.x0) < 14 && Math.abs(b.y0 - o.y0) < 10;
    const inside = spots.filter((b) => b.x0 >= this.left && b.x1 <= this.right && b.y0 >= this.top && b.y1 <= this.bottom);
    if (inside.some((b) => this.boxes.some((o) => o.text === text && near(b, o)))) return;
    const free = inside.find((b) => !this.boxes.some((o) => b.x0 < o.x1 && o.x0 < b.x1 && b.y0 < o.y1 && o.y0 < b.y1)) ?? inside[0] ?? spots[0]!;
    this.boxes.push({ ...free, text });
    // a white halo keeps the label legible over lines and grid
    this.out.push(`<text class="point-label" x="${free.x0.toFixed(1)}" y="${(free.y1 - 1.5).toFixed(1)}" font-size="9" fill="#333" stroke="#fff" stroke-width="2.5" paint-order="stroke">${esc(text)}</text>`);
  }

  svg(): string[] {
    return this.out;
  }
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
  /** Horizontal baseline lines (the full cache): drawn in the style of the series `name`, labelled `label`. */
  refs?: { y: number; label: string; name: string }[];
  styles: Styles;
  /** A fixed y range (accuracy: 0 to 1) instead of one fitted to the data. */
  yRange?: [number, number];
}

/**
 * The y value above which points are drawn clipped at the top edge: when the largest values are far
 * above the bulk (a `random` baseline), they would otherwise flatten every other line.
 */
function clipAbove(ys: number[]): number {
  const sorted = [...ys].sort((a, b) => a - b);
  const q75 = sorted[Math.floor(0.75 * (sorted.length - 1))]!;
  if (!(q75 > 0) || sorted.at(-1)! <= 3 * q75) return Infinity;
  return 1.3 * Math.max(...sorted.filter((y) => y <= 3 * q75));
}

/** An SVG line chart, and a note naming the points drawn clipped (empty when none). */
function lineChart(c: LineChart): { svg: string; note: string } {
  const xs = c.series.flatMap((s) => s.points.map((p) => p.x));
  const allYs = [...c.series.flatMap((s) => s.points.map((p) => p.y)), ...(c.refs ?? []).map((r) => r.y)];
  const cap = c.yRange ? Infinity : clipAbove(allYs);
  const clipped = c.series.flatMap((s) => s.points.filter((p) => p.y > cap));
  const ys = allYs.filter((y) => y <= cap);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = c.yRange ?? [Math.min(...ys), Math.max(...ys)];
  // a wide positive range would flatten the rest: use a log axis then
  const yLog = !c.yRange && y0 > 0 && y1 / y0 > 4;
  if (c.xLog) {
    [x0, x1] = [x0 / 1.25, x1 * 1.25];
  } else {
    const pad = (x1 - x0) * 0.05 || Math.abs(x0) * 0.1 || 1;
    [x0, x1] = [x0 - pad, x1 + pad];
  }
  if (c.yRange) {
    const pad = (y1 - y0) * 0.04;
    [y0, y1] = [y0 - pad, y1 + pad];
  } else if (yLog) {
    [y0, y1] = [y0 / 1.1, y1 * 1.1];
  } else {
    const ypad = (y1 - y0) * 0.08 || Math.abs(y0) * 0.05 || 1;
    [y0, y1] = [y0 - ypad, y1 + ypad];
  }
  // the legend: each series, then each baseline's series, once
  const legend = [...new Set([...c.series.map((s) => s.name), ...(c.refs ?? []).map((r) => r.name)])].sort(byMethod);
  // the legend gets the width its longest label needs
  // long names (a variant's parameters) wrap after commas
  const legendLines = legend.map((n) => wrap(n, 46));
  const right = Math.max(M.right, 52 + Math.max(0, ...legendLines.flat().map((l) => textWidth(l))));
  const W2 = W - M.right + right;
  const legendY = legendLines.map((_, i) => M.top + 8 + 16 * i + 13 * legendLines.slice(0, i).reduce((n, ls) => n + ls.length - 1, 0));
  const H2 = Math.max(H, (legendY.at(-1) ?? 0) + 13 * ((legendLines.at(-1)?.length ?? 1) - 1) + 14);
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const sx = (v: number): number => M.left + (c.xLog ? Math.log(v / x0) / Math.log(x1 / x0) : (v - x0) / (x1 - x0)) * pw;
  const syRaw = (v: number): number => M.top + (1 - (yLog ? Math.log(v / y0) / Math.log(y1 / y0) : (v - y0) / (y1 - y0))) * ph;
  const sy = (v: number): number => (v > cap ? M.top : syRaw(v));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" id="${c.id}" class="plot" viewBox="0 0 ${W2} ${H2}" width="${W2}" height="${H2}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect x="0" y="0" width="${W2}" height="${H2}" fill="#fff"/>`);
  // grid and axes
  for (const t of c.xLog ? (c.xPow2 ? pow2Ticks(x0, x1) : logTicks(x0, x1)) : niceTicks(x0, x1)) {
    const x = sx(t).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${M.top}" y2="${M.top + ph}" stroke="#eee"/>`);
    out.push(`<text x="${x}" y="${M.top + ph + 14}" text-anchor="middle" fill="#333">${esc(c.xFormat(t))}</text>`);
  }
  for (const t of yLog ? logTicks(y0, y1) : niceTicks(y0, y1).filter((t) => !c.yRange || (t >= c.yRange[0] && t <= c.yRange[1]))) {
    const y = sy(t).toFixed(1);
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y}" y2="${y}" stroke="#eee"/>`);
    out.push(`<text x="${M.left - 6}" y="${y}" dy="0.32em" text-anchor="end" fill="#333">${esc(fmt(t))}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 10}" text-anchor="middle" fill="#000">${esc(c.xLabel)}</text>`);
  out.push(`<text transform="translate(14 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle" fill="#000">${esc(yLog ? `${c.yLabel} (log)` : c.yLabel)}</text>`);
  const labels = new PointLabels(M.left, M.left + pw, M.top, M.top + ph);
  const refLabels = new Map<number, string[]>(); // baselines within 4px share one label
  for (const r of c.refs ?? []) {
    const st = c.styles.of(r.name);
    const y = sy(r.y);
    out.push(`<line class="ref" data-series="${esc(r.name)}" x1="${M.left}" x2="${M.left + pw}" y1="${y.toFixed(1)}" y2="${y.toFixed(1)}" stroke="${st.color}" stroke-width="1.5" stroke-opacity="0.85"${st.dash ? ` stroke-dasharray="${st.dash}"` : ''}><title>${esc(`${r.label}: ${fmt(r.y)}`)}</title></line>`);
    const near = [...refLabels.keys()].find((k) => Math.abs(k - y) < 4) ?? y;
    refLabels.set(near, [...(refLabels.get(near) ?? []), r.label]);
  }
  // labelled at the left end: small budgets are worse, so the lines are away from the baseline there
  for (const [y, names] of refLabels) labels.add(M.left + 2, y, names.join(', '));
  c.series.forEach((s) => {
    const st = c.styles.of(s.name);
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    const d = pts.map((p, j) => `${j ? 'L' : 'M'}${sx(p.x).toFixed(1)} ${sy(p.y).toFixed(1)}`).join(' ');
    // slightly see-through, so a line under another still shows
    out.push(`<path class="series" data-series="${esc(s.name)}" d="${d}" fill="none" stroke="${st.color}" stroke-width="2" stroke-opacity="0.8"${st.dash ? ` stroke-dasharray="${st.dash}"` : ''}/>`);
    for (const p of pts) {
      const [x, y] = [sx(p.x), sy(p.y)];
      const title = `<title>${esc(`${p.label}: ${fmt(p.y)}`)}</title>`;
      // a clipped point is a triangle pointing up at the top edge
      out.push(p.y > cap
        ? `<path class="clipped" d="M${x.toFixed(1)} ${(y - 6).toFixed(1)} l5 9 h-10 z" fill="${st.color}">${title}</path>`
        : marker(x, y, st, title));
      if (p.tag !== undefined) labels.add(x, y, p.tag);
    }
  });
  out.push(...labels.svg());
  // a baseline is a line without points: its entry has no marker
  legend.forEach((name, i) => out.push(legendItem(W - M.right + 12, legendY[i]!, c.styles.of(name), name, 'line', c.series.some((s) => s.name === name), legendLines[i])));
  out.push('</svg>');
  const note = clipped.length ? ` Off the scale, drawn as ▲ at the top edge: ${clipped.map((p) => `${p.label} (${fmt(p.y)})`).join(', ')}.` : '';
  return { svg: out.join('\n'), note };
}

/** Rows of one experiment (model × task × params); the last row of a cache wins. */
export interface Experiment {
  title: string;
  /** Short, unique within a report: model file name, task, parameter values (ids and PNG names). */
  key: string;
  model: string;
  task: string;
  rows: ResultRow[];
  /** Every seed's row of each cache (rows hold their mean); for error bars. */
  seedRows?: ResultRow[];
  /** The report's styles, shared by all its plots (a fresh set when missing). */
  styles?: Styles;
}

/**
 * What a Pareto point can be labelled with: its budget (a fraction or a count; window: its recent part),
 * its bit width (K4V2: keys' and values'), and for the full cache in a float codec, that codec.
 */
export function pointTags(cache: string): { budget?: string; bits?: string; codec?: string } {
  try {
    const { policy, codec } = parseSpec(cache);
    const b = policy.name === 'window' ? policy.params.recent : policy.params.budget;
    // qhitter's bits are its policy's
    const bits = typeof policy.params.bits === 'number' ? policy.params.bits : codec.params.bits;
    const { kbits, vbits } = codec.params;
    return {
      budget: typeof b === 'number' ? fmt(b) : undefined,
      bits: typeof bits === 'number' ? `${bits}-bit` : typeof kbits === 'number' && typeof vbits === 'number' ? `K${kbits}V${vbits}` : undefined,
      codec: policy.name === 'full' ? codec.name : undefined,
    };
  } catch {
    return {};
  }
}

/**
 * The labels of a line's points: what varies along it (the budget, the bits, or both); a line of one
 * point, or whose points differ in nothing swept, shows its budget, else its bits, else its codec.
 */
export function lineTags(caches: readonly string[]): (string | undefined)[] {
  const tags = caches.map(pointTags);
  const keys = (['budget', 'bits', 'codec'] as const);
  const varying = keys.filter((k) => new Set(tags.map((t) => t[k])).size > 1);
  return tags.map((t) => {
    const shown = (varying.length ? varying : keys.filter((k) => t[k] !== undefined).slice(0, 1)).map((k) => t[k]).filter((v) => v !== undefined);
    return shown.length ? shown.join(', ') : undefined;
  });
}

function groupSeries(rows: ResultRow[], x: (r: ResultRow) => number | undefined, y: (r: ResultRow) => number | undefined, tagged = false): Series[] {
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
  const series = [...byFamily.values()];
  if (tagged) {
    for (const s of series) lineTags(s.points.map((p) => p.label)).forEach((tag, i) => (s.points[i]!.tag = tag));
  }
  return series;
}

/** Metrics with a fixed scale: accuracy and agreement run from 0 to 1. */
function yRangeOf(metric: string): [number, number] | undefined {
  return metric === 'accuracy' || metric === 'top1' ? [0, 1] : undefined;
}

/** Quality against KV bytes per token, log x, one line per family: the Pareto view. */
export function paretoPlot(e: Experiment, metric: string, yLabel: string): Plot | undefined {
  const series = groupSeries(e.rows, (r) => (r.memory.kv_bytes_per_token > 0 ? r.memory.kv_bytes_per_token : undefined), (r) => r.metrics[metric], true);
  if (series.length === 0) return undefined;
  const id = `pareto-${slug(`${e.key}-${metric}`)}`;
  const chart = lineChart({ id, xLabel: 'KV bytes per token (log)', yLabel, xLog: true, xPow2: true, xFormat: formatBytes, series, yRange: yRangeOf(metric), styles: e.styles ?? new Styles() });
  return {
    id,
    title: `${yLabel} vs KV bytes per token — ${e.title}`,
    caption: `${yRangeOf(metric) ? 'Upper left' : 'Lower left'} is better. x: KV cache bytes per token held once compressed (log scale); one line per policy+codec, each point labelled with what varies along its line (the budget as a fraction of the prompt, the bits); the full cache in fp16 and fp32 is one line, its points labelled with the codec.${chart.note}`,
    svg: chart.svg,
  };
}

/** A metric against the budget fraction, one line per family, the full cache as a dashed line. */
export function budgetPlot(e: Experiment, metric: string, yLabel: string): Plot | undefined {
  const series = groupSeries(e.rows.filter((r) => budgetFraction(r.cache) !== undefined), (r) => budgetFraction(r.cache), (r) => r.metrics[metric]);
  if (series.length === 0) return undefined;
  const refs = e.rows.filter((r) => family(r.cache) === FULL_FLOAT && r.metrics[metric] !== undefined).map((r) => ({ y: r.metrics[metric]!, label: r.cache, name: FULL_FLOAT }));
  const id = `budget-${slug(`${e.key}-${metric}`)}`;
  const chart = lineChart({ id, xLabel: 'budget (fraction of the prompt)', yLabel, xLog: false, xFormat: fmt, series, refs, yRange: yRangeOf(metric), styles: e.styles ?? new Styles() });
  return {
    id,
    title: `${yLabel} vs budget — ${e.title}`,
    caption: `x: tokens kept as a fraction of the prompt (window: its recent part); horizontal lines: the full cache, each labelled with its spec.${chart.note}`,
    svg: chart.svg,
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
  const chart = lineChart({ id, xLabel: 'position (tokens)', yLabel: 'perplexity', xLog: false, xFormat: fmt, series, styles: e.styles ?? new Styles() });
  return {
    id,
    title: `perplexity per ${windowSize}-token window — ${e.title}`,
    caption: `x: position in the sequence (end of each window); y: perplexity of that window. A line that stays flat past the trained context means the cache streams.${chart.note}`,
    svg: chart.svg,
  };
}

/** One small accuracy heatmap (rows: lengths, columns: depths) per cache, side by side, each cell showing its value. */
export function heatmapPlot(e: Experiment): Plot | undefined {
  const cells = e.rows.map((r) => ({ cache: r.cache, grid: readGrid(r.metrics) })).filter((c) => c.grid.acc.size > 0);
  if (cells.length === 0) return undefined;
  const lengths = [...new Set(cells.flatMap((c) => c.grid.lengths))].sort((a, b) => a - b);
  const depths = [...new Set(cells.flatMap((c) => c.grid.depths))].sort((a, b) => a - b);
  const cw = 30;
  const ch = 18;
  const left = 44;
  const top = 30;
  const panelW = Math.max(left + depths.length * cw + 16, 210); // room for a cache spec as the title
  const titleLines = Math.max(...cells.map((c) => wrap(c.cache, 34).length));
  const panelH = top + (titleLines - 1) * 12 + lengths.length * ch + 34;
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
    out.push(`<g class="panel" data-cache="${esc(c.cache)}" transform="translate(${ox} ${oy + (titleLines - 1) * 12})">`);
    out.push(`<text x="4" y="${12 - (titleLines - 1) * 12}" font-weight="bold">${tspans(wrap(c.cache, 34), 4, 12)}<title>${esc(c.cache)}</title></text>`);
    lengths.forEach((L, li) => {
      out.push(`<text x="${left - 4}" y="${top + li * ch + ch / 2}" dy="0.32em" text-anchor="end">${L}</text>`);
      depths.forEach((d, di) => {
        const v = c.grid.acc.get(`${L},${d}`);
        const [x, y] = [left + di * cw, top + li * ch];
        out.push(`<rect class="cell" x="${x}" y="${y}" width="${cw - 1}" height="${ch - 1}" fill="${v === undefined ? '#fff' : heat(v)}"${v === undefined ? ' stroke="#ccc"' : ''}><title>${esc(`${c.cache} L=${L} depth=${d}%: ${v === undefined ? 'not run' : v.toFixed(2)}`)}</title></rect>`);
        // the value itself, white on the dark half of the scale
        out.push(`<text class="cell-value" x="${x + (cw - 1) / 2}" y="${y + (ch - 1) / 2}" dy="0.35em" text-anchor="middle" font-size="9" fill="${v !== undefined && v < 0.55 ? '#fff' : '#000'}">${v === undefined ? '–' : cellText(v)}</text>`);
      });
    });
    depths.forEach((d, di) => {
      out.push(`<text x="${left + di * cw + cw / 2}" y="${top + lengths.length * ch + 11}" text-anchor="middle">${d}</text>`);
    });
    out.push(`<text x="${left + (depths.length * cw) / 2}" y="${top + lengths.length * ch + 24}" text-anchor="middle" fill="#555">depth %</text>`);
    out.push('</g>');
  });
  // the colour scale 0 → 1 (a key to the cells, not a list of series)
  for (let k = 0; k <= 10; k++) {
    out.push(`<rect class="colorbar" x="${10 + k * 18}" y="${height - 20}" width="18" height="10" fill="${heat(k / 10)}"/>`);
  }
  out.push(`<text x="${10 + 11 * 18 + 6}" y="${height - 11}">accuracy 0 → 1 (rows: prompt length in tokens; – not run)</text>`);
  out.push('</svg>');
  return {
    id,
    title: `${e.task} accuracy by length and depth — ${e.title}`,
    caption: 'One panel per cache; rows: prompt length (tokens), columns: depth of the key/needle (%); each cell: the accuracy over the trials, as its number and its colour (viridis: dark 0, yellow 1).',
    svg: out.join('\n'),
  };
}

/** An accuracy as a cell shows it: 1, 0.5, 0.67. */
function cellText(v: number): string {
  return String(Number(v.toFixed(2)));
}

/** Viridis at ninths (matplotlib's): lightness rises from 0 to 1, so it reads in greyscale and for colour-blind readers. */
const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58', '#fde725'];

/** Accuracy 0 → 1 on the viridis scale, linear between its stops. */
export function heat(v: number): string {
  const t = Math.max(0, Math.min(1, v)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(t), VIRIDIS.length - 2);
  const [a, b] = [VIRIDIS[i]!, VIRIDIS[i + 1]!].map((h) => [1, 3, 5].map((k) => parseInt(h.slice(k, k + 2), 16)));
  const c = a!.map((x, k) => Math.round(x + (b![k]! - x) * (t - i)));
  return `rgb(${c.join(',')})`;
}

/**
 * ROUGE-1/2/L F1 as grouped horizontal bars, one group per cache with its full spec beside it; with
 * several seeds, the mean and ±1 standard deviation.
 */
/** ROUGE-1, -2, -L: Okabe–Ito blue, orange, green. */
const BAR_COLORS = ['#0072B2', '#E69F00', '#009E73'];

export function rougePlot(e: Experiment): Plot | undefined {
  const rows = e.rows.filter((r) => r.metrics.rouge1 !== undefined);
  if (rows.length === 0) return undefined;
  const metrics = [['rouge1', 'ROUGE-1'], ['rouge2', 'ROUGE-2'], ['rougeL', 'ROUGE-L']] as const;
  const spread = (cache: string, m: string): number | undefined => {
    const vs = (e.seedRows ?? []).filter((r) => r.cache === cache && r.metrics[m] !== undefined).map((r) => r.metrics[m]!);
    if (vs.length < 2) return undefined;
    const mean = vs.reduce((a, b) => a + b, 0) / vs.length;
    return Math.sqrt(vs.reduce((a, v) => a + (v - mean) ** 2, 0) / (vs.length - 1));
  };
  const seeds = Math.max(1, ...rows.map((r) => new Set((e.seedRows ?? []).filter((s) => s.cache === r.cache).map((s) => s.seed)).size));
  const barH = 7;
  const groupH = 3 * barH + 8;
  const left = 14 + Math.max(...rows.map((r) => textWidth(r.cache) * 0.92));
  const top = 30;
  const pw = 420;
  const width = Math.round(left + pw + 24);
  const height = top + rows.length * groupH + 30;
  const max = Math.max(0.05, ...rows.flatMap((r) => metrics.map(([m]) => (r.metrics[m] ?? 0) + (spread(r.cache, m) ?? 0))));
  const ticks = niceTicks(0, max * 1.05);
  const xMax = ticks.at(-1)! >= max ? ticks.at(-1)! : max * 1.1;
  const sx = (v: number): number => left + (v / xMax) * pw;
  const id = `rouge-${slug(e.key)}`;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" id="${id}" class="plot bars" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" font-family="sans-serif" font-size="10">`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#fff"/>`);
  for (const t of ticks.filter((t) => t <= xMax)) {
    const x = sx(t).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${top}" y2="${height - 24}" stroke="#eee"/>`);
    out.push(`<text x="${x}" y="${height - 10}" text-anchor="middle">${fmt(t)}</text>`);
  }
  metrics.forEach(([, label], k) => out.push(legendItem(left + k * 100, 12, { color: BAR_COLORS[k]!, dash: '', marker: 0 }, `${label} F1`, 'box')));
  rows.forEach((r, i) => {
    const gy = top + i * groupH + 4;
    out.push(`<text x="${left - 6}" y="${gy + 1.5 * barH}" dy="0.32em" text-anchor="end">${esc(r.cache)}</text>`);
    metrics.forEach(([m], k) => {
      const v = r.metrics[m] ?? 0;
      const y = gy + k * barH;
      out.push(`<rect class="bar" data-cache="${esc(r.cache)}" data-metric="${m}" x="${left}" y="${y}" width="${(sx(v) - left).toFixed(1)}" height="${barH - 1}" fill="${BAR_COLORS[k]}"><title>${esc(`${r.cache} ${m}: ${v.toFixed(4)}`)}</title></rect>`);
      const sd = spread(r.cache, m);
      if (sd !== undefined) {
        const [x1, x2, cy] = [sx(Math.max(0, v - sd)).toFixed(1), sx(v + sd).toFixed(1), y + (barH - 1) / 2];
        out.push(`<path class="error-bar" d="M${x1} ${cy} H${x2} M${x1} ${cy - 3} v6 M${x2} ${cy - 3} v6" stroke="#000" stroke-width="1"/>`);
      }
    });
  });
  out.push(`<line x1="${left}" x2="${left}" y1="${top}" y2="${height - 24}" stroke="#999"/>`);
  out.push('</svg>');
  return {
    id,
    title: `XSum ROUGE F1 — ${e.title}`,
    caption: `Mean ROUGE-1/2/L F1 (rouge-score semantics, Porter stemming) of the generated summaries against the reference, per cache${seeds > 1 ? `; bars: the mean over ${seeds} sampling seeds, whiskers ±1 standard deviation across them` : ''}.`,
    svg: out.join('\n'),
  };
}
