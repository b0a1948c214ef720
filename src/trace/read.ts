import { KvpackError } from '../errors.js';
import {
  gapDecode, TRACE_FORMAT, type EndRecord, type HeaderRecord, type RunRecord, type StepRecord, type TokensRecord, type TraceRecord,
} from './format.js';

/** What one (layer, KV head) holds at a step: positions ascending, each one's score (if the policy has one). */
export interface HeadState {
  positions: Int32Array;
  scores: readonly number[] | undefined;
}

/** A trace file that is not one (the viewer shows the message; the CLI prints it). */
export class TraceFormatError extends KvpackError {
  override readonly name = 'TraceFormatError';
}

const CHECKPOINT_EVERY = 32;
/** The most layers, KV heads per layer, and (layer, KV head) pairs a trace may declare: beyond any model here, and what the viewer can lay out. */
export const TRACE_BOUNDS = { layers: 1024, kvHeads: 1024, heads: 65536 } as const;

/** One run of a trace (one cache spec): its steps, replayed to held sets on demand. */
export class TraceRun {
  readonly steps: StepRecord[] = [];
  end: EndRecord | undefined;
  private added: Int32Array[][] = [];
  private dropped: Int32Array[][] = [];
  /** Per head and position: each error report, oldest first. */
  private reports: Map<number, { step: number; key: number; value: number }[]>[] = [];
  private readonly states = new Map<number, Int32Array[]>();

  constructor(readonly info: RunRecord, private readonly heads: number) {
    for (let i = 0; i < heads; i++) this.reports.push(new Map());
  }

  get spec(): string {
    return this.info.spec;
  }

  add(step: StepRecord): void {
    if (step.step !== this.steps.length) throw new TraceFormatError(`run ${this.info.run}: step ${step.step} follows step ${this.steps.length - 1}`);
    if (step.heads.length !== this.heads) throw new TraceFormatError(`run ${this.info.run} step ${step.step}: ${step.heads.length} heads, expected ${this.heads}`);
    this.steps.push(step);
    this.added.push(step.heads.map((h) => Int32Array.from(gapDecode(h.a))));
    this.dropped.push(step.heads.map((h) => Int32Array.from(gapDecode(h.d))));
    step.heads.forEach((h, i) => {
      gapDecode(h.e).forEach((p, j) => {
        const list = this.reports[i]!.get(p) ?? [];
        list.push({ step: step.step, key: h.ke![j]!, value: h.ve![j]! });
        this.reports[i]!.set(p, list);
      });
    });
  }

  /** Held positions and scores of `head` (layer-major index) at `step`. */
  head(step: number, head: number): HeadState {
    const positions = this.held(step)[head]!;
    return { positions, scores: this.steps[step]!.heads[head]!.s };
  }

  /** Key and value error of a held token as stored at `step` (undefined when the codec stores f32). */
  errors(step: number, head: number, position: number): { key: number; value: number } | undefined {
    const list = this.reports[head]!.get(position) ?? [];
    let last: { key: number; value: number } | undefined;
    for (const r of list) if (r.step <= step) last = r;
    return last && { key: last.key, value: last.value };
  }

  /** Held positions of every head at a step, replayed from the nearest checkpoint. */
  held(step: number): Int32Array[] {
    if (step < 0 || step >= this.steps.length) throw new RangeError(`step ${step} outside 0..${this.steps.length - 1}`);
    const cached = this.states.get(step);
    if (cached) return cached;
    let from = step - (step % CHECKPOINT_EVERY);
    while (from > 0 && !this.states.has(from - 1)) from -= CHECKPOINT_EVERY;
    let state = from > 0 ? this.states.get(from - 1)! : Array.from({ length: this.heads }, () => new Int32Array(0));
    for (let t = from; t <= step; t++) {
      state = state.map((held, i) => applyDelta(held, this.dropped[t]![i]!, this.added[t]![i]!));
      if ((t + 1) % CHECKPOINT_EVERY === 0 || t === step) this.states.set(t, state);
    }
    return state;
  }
}

/** (held − dropped) ∪ added, all ascending. */
function applyDelta(held: Int32Array, dropped: Int32Array, added: Int32Array): Int32Array {
  const out = new Int32Array(held.length - dropped.length + added.length);
  let d = 0;
  let a = 0;
  let o = 0;
  for (const p of held) {
    while (d < dropped.length && dropped[d]! < p) d++;
    if (d < dropped.length && dropped[d] === p) continue;
    while (a < added.length && added[a]! < p) out[o++] = added[a++]!;
    out[o++] = p;
  }
  while (a < added.length) out[o++] = added[a++]!;
  if (o !== out.length) throw new TraceFormatError('a step drops a position that was not held');
  return out;
}

/** A header whose shape the viewer can draw: counts are integers within TRACE_BOUNDS. */
function checkHeader(header: HeaderRecord): void {
  const count = (name: 'layers' | 'kvHeads', max: number) => {
    const n = header[name];
    if (!Number.isInteger(n) || n < 1 || n > max) throw new TraceFormatError(`the header's ${name} must be an integer in 1..${max}, got ${JSON.stringify(n)}`);
  };
  count('layers', TRACE_BOUNDS.layers);
  count('kvHeads', TRACE_BOUNDS.kvHeads);
  if (header.layers * header.kvHeads > TRACE_BOUNDS.heads) {
    throw new TraceFormatError(`the header declares ${header.layers} layers × ${header.kvHeads} KV heads, more than ${TRACE_BOUNDS.heads} in all`);
  }
}

/** A parsed trace: header, text, runs. A final line cut short (a run still writing) is ignored. */
export class Trace {
  readonly runs: TraceRun[] = [];
  tokens: TokensRecord | undefined;
  /** False when the file ends mid-record or a run has no end record (still running or killed). */
  complete = true;

  private constructor(readonly header: HeaderRecord) {}

  get heads(): number {
    return this.header.layers * this.header.kvHeads;
  }

  static parse(text: string): Trace {
    const lines = text.split('\n');
    const cut = lines[lines.length - 1] !== '';
    let trace: Trace | undefined;
    lines.forEach((line, i) => {
      if (!line) return;
      let record: TraceRecord;
      try {
        record = JSON.parse(line) as TraceRecord;
      } catch {
        if (i === lines.length - 1 && cut && trace) return;
        throw new TraceFormatError(trace ? `line ${i + 1} is not JSON` : `not a kvpack trace (line ${i + 1} is not JSON)`);
      }
      if (!trace) {
        if (record.type !== 'trace' || record.format !== TRACE_FORMAT) throw new TraceFormatError(`not a kvpack trace (line 1 has no "format":"${TRACE_FORMAT}")`);
        checkHeader(record);
        trace = new Trace(record);
        return;
      }
      trace.take(record, i + 1);
    });
    if (!trace) throw new TraceFormatError('the trace is empty');
    if (cut || trace.runs.some((r) => !r.end)) trace.complete = false;
    return trace;
  }

  private take(record: TraceRecord, line: number): void {
    switch (record.type) {
      case 'tokens':
        this.tokens = record;
        return;
      case 'run':
        if (record.run !== this.runs.length) throw new TraceFormatError(`line ${line}: run ${record.run} follows run ${this.runs.length - 1}`);
        this.runs.push(new TraceRun(record, this.heads));
        return;
      case 'step':
        this.run(record.run, line).add(record);
        return;
      case 'end':
        this.run(record.run, line).end = record;
        return;
      default:
        throw new TraceFormatError(`line ${line}: unknown record type "${(record as { type: string }).type}"`);
    }
  }

  private run(index: number, line: number): TraceRun {
    const run = this.runs[index];
    if (!run) throw new TraceFormatError(`line ${line}: run ${index} has no run record`);
    return run;
  }
}
