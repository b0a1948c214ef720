/**
 * A progress display for long jobs (downloads, evals, benchmarks). It writes to stderr by default so that stdout
 * carries only results. On a terminal it redraws one line in place; elsewhere (CI logs, pipes) it prints a plain
 * line at most every ~10 s and a final summary, never a carriage return.
 */

/** The part of a stream the display uses; `process.stderr` fits, and so does a fake in tests. */
export interface ProgressStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressOptions {
  /** Units of work in the whole job; 0 when unknown (no bar, percent or ETA then). */
  total: number;
  label: string;
  /** 'B' formats counts and rates as bytes; anything else is printed after the number ('tok', 'docs'). */
  unit?: string;
  stream?: ProgressStream;
  /** Milliseconds; injectable so tests need not sleep. */
  clock?: () => number;
}

const TTY_INTERVAL_MS = 100;
const LOG_INTERVAL_MS = 10_000;
/** Below this much elapsed time a rate is mostly noise (the first chunk arrives "instantly"). */
const MIN_RATE_MS = 250;

export class Progress {
  private readonly label: string;
  private readonly unit: string;
  private readonly stream: ProgressStream;
  private readonly clock: () => number;
  private readonly tty: boolean;
  private readonly start: number;
  private total: number;
  private count = 0;
  /** Work that was already done before this run (a resumed download): shown in the count, left out of the rate. */
  private skipped = 0;
  private lastDraw: number;
  private drawn = false;
  private finished = false;
  private status = '';

  constructor(options: ProgressOptions) {
    this.label = options.label;
    this.unit = options.unit ?? '';
    this.total = Math.max(0, options.total);
    this.stream = options.stream ?? process.stderr;
    this.clock = options.clock ?? (() => performance.now());
    this.tty = this.stream.isTTY === true;
    this.start = this.clock();
    // Non-TTY: the first line comes after one interval, so short jobs print only their summary.
    this.lastDraw = this.tty ? -Infinity : this.start;
  }

  /** Record `n` more units of work done in this run. */
  tick(n = 1): void {
    this.count += n;
    this.maybeDraw();
  }

  /** Record `n` units that were already done (not counted in the rate or ETA). */
  skip(n: number): void {
    this.count += n;
    this.skipped += n;
    this.maybeDraw();
  }

  setTotal(n: number): void {
    this.total = Math.max(0, n);
    this.maybeDraw();
  }

  /** A status shown after the numbers ('3 running, 1 failed'); '' for none. */
  setStatus(text: string): void {
    this.status = text;
    this.maybeDraw();
  }

  /** Print the final summary line; `note` is appended (e.g. 'failed'). Later calls do nothing. */
  done(note?: string): void {
    if (this.finished) return;
    this.finished = true;
    const elapsed = (this.clock() - this.start) / 1000;
    const worked = this.count - this.skipped;
    let line = `${this.label}: ${this.amount(this.count)}`;
    if (this.skipped > 0) line += ` (${this.amount(this.skipped)} already present)`;
    line += ` in ${formatDuration(elapsed)}`;
    if (worked > 0 && elapsed > 0) line += `, ${this.rate(worked / elapsed)}`;
    if (note) line += ` — ${note}`;
    this.stream.write(this.tty ? `\r${line}\x1b[K\n` : `${line}\n`);
  }

  private maybeDraw(): void {
    if (this.finished) return;
    const now = this.clock();
    const complete = this.total > 0 && this.count >= this.total;
    if (this.tty) {
      // Always draw the first and the completing update; throttle the rest.
      if (this.drawn && !complete && now - this.lastDraw < TTY_INTERVAL_MS) return;
      this.lastDraw = now;
      this.drawn = true;
      this.stream.write(`\r${this.ttyLine(now)}\x1b[K`);
    } else {
      if (now - this.lastDraw < LOG_INTERVAL_MS) return;
      this.lastDraw = now;
      this.stream.write(`${this.label}: ${this.stats(now).join(', ')}\n`);
    }
  }

  /** percent + count/total, rate, ETA — the pieces both display modes share. */
  private stats(now: number): string[] {
    const elapsed = (now - this.start) / 1000;
    const rate = now - this.start >= MIN_RATE_MS ? (this.count - this.skipped) / elapsed : 0;
    const parts: string[] = [];
    if (this.total > 0) {
      const pct = Math.min(100, (100 * this.count) / this.total);
      parts.push(`${pct.toFixed(0)}% ${this.amount(this.count, this.total)}`);
    } else {
      parts.push(this.amount(this.count));
    }
    parts.push(rate > 0 ? this.rate(rate) : `? ${this.unitPerSecond()}`);
    if (this.total > 0) {
      const left = Math.max(0, this.total - this.count);
      parts.push(`ETA ${rate > 0 ? formatDuration(left / rate) : '?'}`);
    }
    if (this.status) parts.push(this.status);
    return parts;
  }

  private ttyLine(now: number): string {
    const text = this.stats(now).join('  ');
    const columns = this.stream.columns && this.stream.columns > 0 ? this.stream.columns : 80;
    // One column spare: writing into the last column makes some terminals wrap.
    const room = columns - 1 - this.label.length - text.length - 4;
    if (this.total > 0 && room >= 10) {
      const width = Math.min(30, room);
      const filled = Math.round((width * Math.min(this.count, this.total)) / this.total);
      return `${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${text}`;
    }
    return `${this.label} ${text}`.slice(0, columns - 1);
  }

  private amount(n: number, total?: number): string {
    if (this.unit === 'B') return total === undefined ? formatBytes(n) : `${formatBytes(n)}/${formatBytes(total)}`;
    const suffix = this.unit ? ` ${this.unit}` : '';
    return total === undefined ? `${n}${suffix}` : `${n}/${total}${suffix}`;
  }

  private rate(perSecond: number): string {
    if (this.unit === 'B') return `${formatBytes(perSecond)}/s`;
    const digits = perSecond >= 100 ? 0 : 1;
    return `${perSecond.toFixed(digits)} ${this.unitPerSecond()}`;
  }

  private unitPerSecond(): string {
    return this.unit === 'B' ? 'B/s' : `${this.unit || 'it'}/s`;
  }
}

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 26102720 → '24.9 MiB'; binary units, one decimal above bytes. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return '? B';
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const sign = bytes < 0 ? '-' : '';
  if (unit === 0) return `${sign}${Math.round(value)} B`;
  // 1023.96 KiB would round to '1024.0 KiB'; fine for a display, and never wrong.
  return `${sign}${value.toFixed(1)} ${BYTE_UNITS[unit]}`;
}

/** Seconds → '0.4s', '42s', '3m05s', '1h02m', '2d03h'; '?' when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const pad = (n: number): string => String(n).padStart(2, '0');
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${pad(Math.floor((s % 86400) / 3600))}h`;
}
