import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { f16ToF32, f32ToF16 } from '../../src/kernels/half.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { gapDecode, gapEncode, type HeadDelta } from '../../src/trace/format.js';
import { Trace, TraceFormatError } from '../../src/trace/read.js';
import { recordTrace } from '../../src/trace/record.js';
import { TraceRecorder } from '../../src/trace/recorder.js';
import { REF6M_DIR } from '../engine/helpers.js';
import { replay } from './replay.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-trace-'));
let model: Model;
let prompt: number[];
let more: number[];

beforeAll(async () => {
  model = await loadModel(REF6M_DIR, { threads: 1 });
  prompt = model.tokenizer.encode('The history of the city begins with a small village on the river, where farmers and traders met every week.', { addBos: true });
  more = model.tokenizer.encode(' Today the old market square is full of shops and cafes', { addBos: false }).slice(0, 10);
});
afterAll(async () => {
  await model.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Runs a session over prompt + `more` tokens with a recorder; returns each step's deltas and the cache's own held sets. */
function traced(cache: string, more: number[], onWritten?: (layer: number, from: number, keys: Float32Array, values: Float32Array, positions: Int32Array) => void) {
  const session = model.session({ cache });
  const steps: HeadDelta[][] = [];
  const truth: number[][][] = [];
  const { numLayers, numKvHeads } = model.config;
  const recorder = new TraceRecorder(session, (heads) => {
    steps.push(heads);
    truth.push(Array.from({ length: numLayers * numKvHeads }, (_, i) => session.cache.heldPositions(Math.floor(i / numKvHeads), i % numKvHeads).sort((a, b) => a - b)));
    return true;
  });
  if (onWritten) {
    const written = recorder.written.bind(recorder);
    recorder.written = (layer, from, n, keys, values, positions) => {
      onWritten(layer, from, keys, values, positions.slice(0, n));
      written(layer, from, n, keys, values, positions);
    };
  }
  session.feed(prompt);
  for (const id of more) session.feed([id]);
  recorder.detach();
  session.dispose();
  return { steps, truth, recorder };
}

describe('trace format', () => {
  it('gap-encodes ascending positions and decodes them back', () => {
    expect(gapEncode([3, 4, 9, 100])).toEqual([3, 1, 5, 91]);
    expect(gapDecode([3, 1, 5, 91])).toEqual([3, 4, 9, 100]);
    expect(gapDecode(undefined)).toEqual([]);
  });

  it('refuses what is not a trace and tolerates a last line cut short', () => {
    expect(() => Trace.parse('{"type":"row"}\n')).toThrow(TraceFormatError);
    expect(() => Trace.parse('')).toThrow(/empty/);
    const lines = [
      '{"type":"trace","format":"kvpack-trace","version":1,"model":"m","layers":1,"kvHeads":1,"maxBytes":1000}',
      '{"type":"run","run":0,"spec":"h2o(budget=2)","errors":false}',
      '{"type":"step","run":0,"step":0,"tokens":3,"heads":[{"a":[0,1,1],"s":[1,2,3]}]}',
      '{"type":"step","run":0,"step":1,"tokens":4,"heads":[{"a":[3],"d":[1],"s":[1,3,4]}]}',
    ];
    const trace = Trace.parse(lines.join('\n') + '\n{"type":"st');
    expect(trace.complete).toBe(false);
    expect(Array.from(trace.runs[0]!.held(1)[0]!)).toEqual([0, 2, 3]);
    expect(trace.runs[0]!.head(1, 0).scores).toEqual([1, 3, 4]);
    expect(() => Trace.parse([...lines.slice(0, 3), '{"type":"step","run":0,"step":1,"tokens":4,"heads":[{"d":[5]}]}'].join('\n')).runs[0]!.held(1)).toThrow(TraceFormatError);
  });
});

describe('trace recorder on ref-6m', () => {
  it('records exactly what the cache holds at every step, and Trace replays it', () => {
    const { steps, truth } = traced('h2o(budget=12,recent=4)', more);
    expect(steps).toHaveLength(1 + more.length);
    expect(replay(steps)).toEqual(truth);
    expect(truth[0]![0]!.length).toBe(12);
    const file = path.join(tmp, 'h2o.jsonl');
    const lines = [
      { type: 'trace', format: 'kvpack-trace', version: 1, model: 'ref-6m', layers: 6, kvHeads: 2, maxBytes: 1e9 },
      { type: 'run', run: 0, spec: 'h2o', errors: false },
      ...steps.map((heads, step) => ({ type: 'step', run: 0, step, tokens: prompt.length + step, heads })),
    ];
    fs.writeFileSync(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    const run = Trace.parse(fs.readFileSync(file, 'utf8')).runs[0]!;
    for (let s = 0; s < truth.length; s++) expect(run.held(s).map((h) => Array.from(h))).toEqual(truth[s]);
    expect(run.held(3).map((h) => Array.from(h))).toEqual(truth[3]); // again, from the cached state
  });

  it("H2O's scores are attention received: with nothing evicted each head's scores sum to the queries seen", () => {
    const { steps } = traced('h2o(budget=1000)', more.slice(0, 3));
    steps.forEach((heads, step) => {
      const queries = prompt.length + step;
      for (const h of heads) {
        expect(h.s).toHaveLength(queries);
        const sum = h.s!.reduce((a, b) => a + b, 0);
        expect(Math.abs(sum - queries)).toBeLessThan(queries * 1e-3);
      }
    });
  });

  it("Scissorhands' scores are counts within its window; Q-Hitter's combined scores lie in [0, 1]", () => {
    for (const h of traced('scissorhands(budget=12,window=8)', more).steps.flat()) {
      for (const c of h.s!) expect(Number.isInteger(c) && c >= 0 && c <= 8).toBe(true);
    }
    const q = traced('qhitter(budget=12)', more);
    for (const h of q.steps.flat()) for (const c of h.s!) expect(c >= 0 && c <= 1).toBe(true);
  });

  it('watching does not change what Q-Hitter keeps (its scores are read without settling)', () => {
    // the budget leaves room for a few decoded tokens: steps without a choice, where reading must not settle
    const spec = `qhitter(budget=${prompt.length + 4})`;
    const untraced = model.session({ cache: spec });
    untraced.feed(prompt);
    const plain: number[][] = [];
    for (const id of more) {
      untraced.feed([id]);
      plain.push(untraced.cache.heldPositions(3, 1).sort((a, b) => a - b));
    }
    untraced.dispose();
    const { truth } = traced(spec, more);
    expect(truth.slice(1).map((heads) => heads[3 * 2 + 1])).toEqual(plain);
  });

  it('key/value errors are the stored rows against the rows written: f16 rounding, int8 within half a step', () => {
    const rows = new Map<string, { key: Float32Array; value: Float32Array }>();
    const { headDim, numKvHeads } = model.config;
    const keep = (layer: number, _from: number, keys: Float32Array, values: Float32Array, positions: Int32Array) => {
      positions.forEach((p, t) => {
        for (let h = 0; h < numKvHeads; h++) {
          const at = (t * numKvHeads + h) * headDim;
          rows.set(`${layer}/${h}/${p}`, { key: keys.slice(at, at + headDim), value: values.slice(at, at + headDim) });
        }
      });
    };
    const norm = (x: ArrayLike<number>) => Math.sqrt(Array.from(x).reduce((a, b) => a + b * b, 0));
    const fp16 = traced('full+fp16', more.slice(0, 2), keep);
    expect(fp16.recorder.errors).toBe(true);
    const step0 = fp16.steps[0]!;
    for (let i = 0; i < step0.length; i++) {
      const positions = gapDecode(step0[i]!.e);
      positions.forEach((p, j) => {
        const { value } = rows.get(`${Math.floor(i / numKvHeads)}/${i % numKvHeads}/${p}`)!;
        const rounded = Float32Array.from(value, (v) => f16ToF32(f32ToF16(v)));
        const expected = norm(rounded.map((r, d) => r - value[d]!)) / norm(value);
        expect(step0[i]!.ve![j]).toBeCloseTo(expected, 6);
        expect(step0[i]!.ke![j]).toBeLessThan(2 ** -11); // a key compared unrotated would be off by O(1)
      });
    }
    rows.clear();
    const int8 = traced('full+int(bits=8,axis=token,group=64)', more.slice(0, 2), keep);
    const first = int8.steps[0]!;
    for (let i = 0; i < first.length; i++) {
      gapDecode(first[i]!.e).forEach((p, j) => {
        const { value } = rows.get(`${Math.floor(i / numKvHeads)}/${i % numKvHeads}/${p}`)!;
        const step = (Math.max(...value) - Math.min(...value)) / 255;
        expect(first[i]!.ve![j]).toBeGreaterThan(0);
        // every number within half a step (plus the f16 rounding of scale and zero)
        expect(first[i]!.ve![j]).toBeLessThanOrEqual((Math.sqrt(headDim) * step * 0.5 * 1.02) / norm(value));
        expect(first[i]!.ke![j]).toBeLessThan(0.05);
      });
    }
    expect(traced('full+fp32', [], keep).steps[0]![0]!.ke).toBeUndefined();
  });

  it("turboquant(qjl=true): key errors are the decoded estimator's (MSE codes plus the sketch), larger than the MSE variant's at the same bits", () => {
    const mean = (spec: string): number => {
      const errors = traced(spec, []).steps[0]!.flatMap((h) => Array.from(h.ke!));
      return errors.reduce((a, b) => a + b, 0) / errors.length;
    };
    const mse = mean('full+turboquant(bits=4)');
    const qjl = mean('full+turboquant(bits=4,qjl=true)');
    // relative errors √‖x − x̃‖²/‖x‖: about √0.009 at 4 bits and √0.05 with QJL (docs/methods.md); the
    // 3-bit MSE codes alone, without the sketch, would give about 1.9 times the 4-bit error
    expect(qjl).toBeGreaterThan(2.1 * mse);
    expect(qjl).toBeLessThan(3 * mse);
  });

  it('a token held at f16 until the codec packs it (KIVI: key channel groups, value residual ring) is measured again when packed', async () => {
    const out = path.join(tmp, 'kivi.jsonl');
    const [R, G] = [4, 32];
    await recordTrace(model, { specs: [`full+int(kbits=2,vbits=2,kaxis=channel,vaxis=token,group=${G},residual=${R})`], prompt, maxTokens: 24, out, progress: false });
    const run = Trace.parse(fs.readFileSync(out, 'utf8')).runs[0]!;
    const f16 = 2 ** -11;
    run.steps.forEach((step, t) => {
      const length = step.tokens;
      let keysPacked = 0; // key groups of G are packed once R + G newer-or-equal tokens follow their start
      while (length - keysPacked >= R + G) keysPacked += G;
      for (let head = 0; head < 12; head++) {
        for (const p of run.held(t)[head]!) {
          const e = run.errors(t, head, p)!;
          if (p < keysPacked) expect(e.key, `step ${t} position ${p}`).toBeGreaterThan(0.02);
          else expect(e.key, `step ${t} position ${p}`).toBeLessThanOrEqual(f16);
          if (p < length - R) expect(e.value, `step ${t} position ${p}`).toBeGreaterThan(0.02);
          else expect(e.value, `step ${t} position ${p}`).toBeLessThanOrEqual(f16);
        }
      }
    });
  });

  it('writes a file as it goes, stops at its byte bound, and says so', async () => {
    const out = path.join(tmp, 'bounded.jsonl');
    const whole = await recordTrace(model, { specs: ['h2o(budget=12)', 'window(sinks=2,recent=10)+int(bits=4)'], prompt, maxTokens: 6, out, progress: false });
    expect(whole.runs.map((r) => [r.steps, r.truncated])).toEqual([[7, false], [7, false]]);
    expect(fs.statSync(out).size).toBe(whole.bytes);
    const trace = Trace.parse(fs.readFileSync(out, 'utf8'));
    expect(trace.complete).toBe(true);
    expect(trace.tokens!.ids).toHaveLength(prompt.length + 6);
    expect(trace.tokens!.pieces.join('')).toBe(model.tokenizer.decode(trace.tokens!.ids));
    expect(trace.runs[1]!.info.errors).toBe(true);
    expect(trace.runs[1]!.errors(0, 0, 0)?.key).toBeGreaterThan(0);

    const bound = Math.floor(whole.bytes / 3);
    const cut = await recordTrace(model, { specs: ['h2o(budget=12)'], prompt, maxTokens: 6, out, maxBytes: bound, progress: false });
    expect(cut.runs[0]!.truncated).toBe(true);
    expect(cut.runs[0]!.steps).toBeLessThan(7);
    const partial = Trace.parse(fs.readFileSync(out, 'utf8'));
    expect(partial.runs[0]!.end!.truncated).toBe(true);
    expect(partial.runs[0]!.steps).toHaveLength(cut.runs[0]!.steps);
    // only the closing records (end, tokens) may pass the bound
    const closing = fs.readFileSync(out, 'utf8').split('\n').filter((l) => /"type":"(end|tokens)"/.test(l)).join('\n').length + 2;
    expect(cut.bytes).toBeLessThanOrEqual(bound + closing);
  });

  it('costs nothing when off: no observer unless attached, and none after detaching', () => {
    const session = model.session({ cache: 'h2o(budget=12)' });
    expect(session.cache.observer).toBeUndefined();
    const recorder = new TraceRecorder(session, () => false);
    expect(session.cache.observer).toBe(recorder);
    session.feed(prompt); // the sink says stop at the first step
    expect(session.cache.observer).toBeUndefined();
    session.dispose();
  });
});
