import fs from 'node:fs';
import { UsageError } from '../errors.js';
import { TRACE_FORMAT, TRACE_VERSION, type EndRecord, type HeadDelta, type HeaderRecord, type TokensRecord, type TraceRecord } from './format.js';

/**
 * Writes a trace line by line as the run goes, so an interrupted run leaves a readable file.
 * Step records stop once the next one would take the file past `maxBytes` (the run is then marked
 * truncated); the short run, end and tokens records are always written.
 */
export class TraceWriter {
  private readonly fd: number;
  private written = 0;
  private run = -1;
  private steps = 0;
  private full = false;

  constructor(readonly file: string, header: Omit<HeaderRecord, 'type' | 'format' | 'version'>) {
    if (!(header.maxBytes > 0)) throw new UsageError(`the trace's byte bound must be positive, got ${header.maxBytes}`);
    try {
      this.fd = fs.openSync(file, 'w');
    } catch (e) {
      throw new UsageError(`--out ${file}: ${(e as Error).message}`);
    }
    this.maxBytes = header.maxBytes;
    this.write({ type: 'trace', format: TRACE_FORMAT, version: TRACE_VERSION, ...header });
  }
  private readonly maxBytes: number;

  /** Bytes written so far. */
  get bytes(): number {
    return this.written;
  }

  beginRun(spec: string, score: string | undefined, errors: boolean): void {
    this.run++;
    this.steps = 0;
    this.full = false;
    this.write({ type: 'run', run: this.run, spec, score, errors });
  }

  /** Writes one step; false once the byte bound is reached (later steps of the run are dropped). */
  step(heads: HeadDelta[], tokens: number): boolean {
    if (this.full) return false;
    const line = JSON.stringify({ type: 'step', run: this.run, step: this.steps, tokens, heads }) + '\n';
    if (this.written + Buffer.byteLength(line) > this.maxBytes) {
      this.full = true;
      return false;
    }
    this.append(line);
    this.steps++;
    return true;
  }

  endRun(kvBytesPeak: number): EndRecord {
    const end: EndRecord = { type: 'end', run: this.run, steps: this.steps, truncated: this.full, kvBytesPeak };
    this.write(end);
    return end;
  }

  tokens(record: Omit<TokensRecord, 'type'>): void {
    this.write({ type: 'tokens', ...record });
  }

  close(): void {
    fs.closeSync(this.fd);
  }

  private write(record: TraceRecord): void {
    this.append(JSON.stringify(record) + '\n');
  }

  private append(line: string): void {
    const bytes = Buffer.from(line);
    fs.writeSync(this.fd, bytes);
    this.written += bytes.length;
  }
}
