import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import lockfile from 'proper-lockfile';
import { KvpackError } from '../errors.js';
import { specFromFp32Default } from '../cache/registry.js';
import type { ParamValue } from '../util/schema.js';
import type { CacheMemory } from './memory.js';

export type TaskParams = Readonly<Record<string, ParamValue>>;

/** One finished (model × cache × task) measurement, one line of a results store. */
export interface ResultRow {
  key: string;
  /**
   * 2: a spec without a codec means fp16 and `compression` is against the full fp16 cache. Rows
   * without it (kvpack 0.1.0) meant fp32 and divided by the f32 cache: reading converts them (see ROW_FORMAT).
   */
  format?: number;
  /** The model as the plan named it (a path or a repo id). */
  model: string;
  model_fingerprint: string;
  /** Canonical cache spec (printSpec ∘ parseSpec). */
  cache: string;
  task: string;
  /** The task's parameters with defaults filled in. */
  params: TaskParams;
  /** The task's own numbers (ppl: ppl, tokens, chunks). */
  metrics: Record<string, number>;
  /** What the cache held (rows written before this was nested carry its four fields at the top; reading moves them here). */
  memory: CacheMemory;
  seconds: number;
  seed: number;
  versions: { kvpack: string; node: string };
  /** ISO 8601. */
  finished_at: string;
  /** The store file it was read from (set by the report; never written). */
  store?: string;
  /** How many seeds' rows this row averages (set by the report; never written). */
  seeds?: number;
}

/** A store line that is not a result row (a hand edit, two writers interleaving). */
export class StoreFormatError extends KvpackError {
  override readonly name = 'StoreFormatError';
}

/** Another process (a second sweep) holds the store's lock. */
export class StoreLockedError extends KvpackError {
  override readonly name = 'StoreLockedError';
}

/** A lock not refreshed for this long is taken over (a sweep killed by SIGKILL leaves one behind). */
const LOCK_STALE_MS = 30_000;

/**
 * The identity of a row: same model weights, same canonical cache, same task and parameters → same
 * key, whatever order the plan wrote the parameters in. The fingerprint is shortened to 64 bits:
 * plenty to tell models apart, and the key stays readable.
 */
export function rowKey(fingerprint: string, cache: string, task: string, params: TaskParams): string {
  const sorted = Object.keys(params).sort().map((k) => `${k}=${JSON.stringify(params[k])}`);
  return `${fingerprint.slice(0, 16)}|${cache}|${task}|${sorted.join(',')}`;
}

/**
 * An append-only JSONL file of result rows. Each finished row is appended with one write, so a crash
 * loses at most the row in flight; a truncated last line (the crash's trace) is ignored on reading
 * and cut off before the next append.
 */
export class ResultStore {
  private readonly list: ResultRow[] = [];
  private readonly keys = new Set<string>();
  /** What the first append must do about a last line without its newline (open() itself never writes). */
  private repair: { kind: 'none' } | { kind: 'truncate'; length: number } | { kind: 'newline' } = { kind: 'none' };
  /** Bytes of the file read as complete lines (or written by this store). */
  private read = 0;

  private constructor(readonly file: string) {}

  /** Reads `file` if it exists (a missing file is an empty store; it is created on the first append). */
  static open(file: string): ResultStore {
    const store = new ResultStore(file);
    store.load();
    return store;
  }

  has(key: string): boolean {
    return this.keys.has(key);
  }

  rows(): readonly ResultRow[] {
    return this.list;
  }

  /**
   * Takes the store's lock (proper-lockfile: FILE.lock, refreshed while held, removed on exit);
   * returns its release. A second sweep on the same store is refused, naming the store.
   */
  lock(): () => void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    try {
      // the lock cannot be refreshed while a row computes synchronously; appends stay idempotent if it is taken over
      return lockfile.lockSync(this.file, { realpath: false, stale: LOCK_STALE_MS, onCompromised: () => {} });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ELOCKED') throw e;
      throw new StoreLockedError(
        `${this.file}: another sweep is writing to this store (its lock is ${this.file}.lock); wait for it to finish, or run this plan with --store OTHER.jsonl`,
      );
    }
  }

  /**
   * Appends a row unless a row with its key is in the file already (another writer may have added it
   * since the store was read); returns whether it was appended.
   */
  append(row: ResultRow): boolean {
    this.catchUp();
    if (this.keys.has(row.key)) return false;
    if (this.repair.kind === 'truncate') fs.truncateSync(this.file, this.repair.length);
    if (this.repair.kind === 'newline') {
      fs.appendFileSync(this.file, '\n');
      this.read += 1;
    }
    this.repair = { kind: 'none' };
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const line = `${JSON.stringify(row)}\n`;
    fs.appendFileSync(this.file, line);
    this.read += Buffer.byteLength(line);
    this.list.push(row);
    this.keys.add(row.key);
    return true;
  }

  /** Reads the complete lines another writer appended since this store last read or wrote. */
  private catchUp(): void {
    if (this.repair.kind !== 'none') return; // the file ends in a partial line: what load() saw is all there is
    let size: number;
    try {
      size = fs.statSync(this.file).size;
    } catch {
      return;
    }
    if (size <= this.read) return;
    const fd = fs.openSync(this.file, 'r');
    const data = Buffer.alloc(size - this.read);
    try {
      fs.readSync(fd, data, 0, data.length, this.read);
    } finally {
      fs.closeSync(fd);
    }
    const end = data.lastIndexOf(0x0a) + 1;
    for (const line of data.subarray(0, end).toString('utf8').split('\n')) {
      const row = line.trim() ? parseRow(line) : undefined;
      if (row && !this.keys.has(row.key)) {
        this.list.push(row);
        this.keys.add(row.key);
      }
    }
    this.read += end;
  }

  private load(): void {
    let data: Buffer;
    try {
      data = fs.readFileSync(this.file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new StoreFormatError(`${this.file}: cannot read the results store (${(e as Error).message})`);
    }
    const end = data.lastIndexOf(0x0a) + 1; // bytes up to the last newline are complete lines
    this.read = end;
    const lines = data.subarray(0, end).toString('utf8').split('\n');
    lines.pop(); // the empty string after the final newline
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      const row = parseRow(line);
      if (!row) throw new StoreFormatError(`${this.file}: line ${i + 1} is not a result row; fix or delete that line`);
      this.list.push(row);
      this.keys.add(row.key);
    });
    // A partial last line parses only by accident (a crash right before the newline): keep it then.
    const tail = data.subarray(end).toString('utf8');
    const tailRow = tail.trim() ? parseRow(tail) : undefined;
    if (tailRow) {
      this.list.push(tailRow);
      this.keys.add(tailRow.key);
      this.repair = { kind: 'newline' };
      this.read = data.length;
    } else if (end < data.length) {
      this.repair = { kind: 'truncate', length: end };
    }
  }
}

/** Opens a results store (see ResultStore). */
export function openStore(file: string): ResultStore {
  return ResultStore.open(file);
}

/**
 * The row format this build writes. Reading a row of format 1 rewrites its spec in today's canonical
 * text (`full` → `full+fp32`, `full+fp16` → `full`) and its key with it, so a plan that names the
 * same cache resumes it, and halves its compression (f32 → fp16 baseline).
 */
export const ROW_FORMAT = 2;

function parseRow(line: string): ResultRow | undefined {
  let row: (Partial<ResultRow> & Partial<CacheMemory>) | null;
  try {
    row = JSON.parse(line) as typeof row;
  } catch {
    return undefined;
  }
  if (!row || typeof row !== 'object' || typeof row.key !== 'string' || typeof row.cache !== 'string' || typeof row.task !== 'string') {
    return undefined;
  }
  if (row.memory === undefined) {
    // the first row shape: the cache's numbers at the top level
    const { kv_bytes_peak, kv_bytes_per_token, compression, bits_per_value, ...rest } = row;
    if (kv_bytes_peak === undefined || kv_bytes_per_token === undefined || compression === undefined || bits_per_value === undefined) return undefined;
    row = { ...rest, memory: { kv_bytes_peak, kv_bytes_per_token, compression, bits_per_value } };
  }
  return row.format === undefined ? fromFormat1(row as ResultRow) : (row as ResultRow);
}

function fromFormat1(row: ResultRow): ResultRow {
  let cache: string;
  try {
    cache = specFromFp32Default(row.cache);
  } catch {
    cache = row.cache; // a spec this build no longer reads: shown as written
  }
  const at = row.key.indexOf(`|${row.cache}|`);
  const key = at < 0 ? row.key : `${row.key.slice(0, at)}|${cache}|${row.key.slice(at + row.cache.length + 2)}`;
  const memory = { ...row.memory, compression: row.memory.compression / 2 };
  return { ...row, format: ROW_FORMAT, key, cache, memory };
}

let packageVersion: string | undefined;

/** The versions a row records: kvpack from package.json, Node from the running process. */
export function versions(): { kvpack: string; node: string } {
  if (packageVersion === undefined) {
    const file = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../package.json');
    try {
      packageVersion = String((JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: unknown }).version ?? 'unknown');
    } catch {
      packageVersion = 'unknown';
    }
  }
  return { kvpack: packageVersion, node: process.version };
}

/** What running a unit measured: the task's numbers, what its cache held, and when, how long and on which versions it ran. */
export type UnitResult = Pick<ResultRow, 'metrics' | 'memory' | 'seconds' | 'versions' | 'finished_at'>;

/** The measured part of a row: the task's output, timed from `startedMs`, stamped now. */
export function unitResult(out: Pick<ResultRow, 'metrics' | 'memory'>, startedMs: number): UnitResult {
  return {
    metrics: out.metrics,
    memory: out.memory,
    seconds: (performance.now() - startedMs) / 1000,
    versions: versions(),
    finished_at: new Date().toISOString(),
  };
}

/** A finished row: what identifies it, what the task measured, and when and how long it ran. */
export function finishedRow(
  id: Pick<ResultRow, 'key' | 'model' | 'model_fingerprint' | 'cache' | 'task' | 'params' | 'seed'>,
  out: Pick<ResultRow, 'metrics' | 'memory'>,
  startedMs: number,
): ResultRow {
  return { format: ROW_FORMAT, ...id, ...unitResult(out, startedMs) };
}
