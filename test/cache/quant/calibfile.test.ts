// Calibration files are input from outside: each kind of corruption is refused by name, before use.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readCalibration, writeCalibration, type Calibration, type StreamCalibration } from '../../../src/cache/quant/calibfile.js';
import type { ModelIdentity } from '../../../src/model/config.js';
import { CalibrationError } from '../../../src/errors.js';
import { rng } from '../../kernels/util.js';

const identity: ModelIdentity = {
  name: 'tiny', architecture: 'llama', numLayers: 2, hiddenSize: 128, numHeads: 4, numKvHeads: 2, headDim: 32, vocabSize: 100,
  ropeLayout: 'half', weights: 'ab'.repeat(32),
};
const width = identity.numKvHeads * identity.headDim;
const r = rng(7);
const stream = (keys: boolean): StreamCalibration => ({
  ...(keys ? { lo: Float32Array.from({ length: width }, () => -1 - r()), hi: Float32Array.from({ length: width }, () => 1 + r()) } : {}),
  luts: { 2: [-1, -0.3, 0.2, 1], 3: [-0.9, -0.6, -0.4, -0.1, 0.1, 0.3, 0.6, 0.95] },
  qnorm: { 2: [-0.95, -0.3, 0.25, 0.9], 3: [-0.9, -0.6, -0.4, -0.1, 0.1, 0.3, 0.6, 1.05] },
});
const calibration: Calibration = {
  model: identity, data: 'synthetic', tokens: 100, outliers: 0.01, fisher: true, seed: 0, bits: [2, 3],
  layers: [0, 1].map(() => ({ keys: stream(true), rotatedKeys: stream(true), values: stream(false) })),
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-calibfile-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A file kvpack calibrate wrote, then changed by `edit`; signed again (as the format defines the hash) unless `sign` is false. */
function corrupt(edit: (body: Json) => void, sign = true): string {
  const file = path.join(dir, `c${files++}.calib`);
  writeCalibration(file, calibration);
  const { sha256, ...body } = JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
  edit(body);
  const hash = sign ? createHash('sha256').update(JSON.stringify(body)).digest('hex') : sha256;
  fs.writeFileSync(file, JSON.stringify({ ...body, sha256: hash }));
  return file;
}

const f32Base64 = (values: number[]): string => Buffer.from(Float32Array.from(values).buffer).toString('base64');
const thresholds = (edit: (x: Float32Array) => void) => (s: string): string => {
  const bytes = Buffer.from(s, 'base64');
  const x = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  edit(x);
  return f32Base64(Array.from(x));
};

describe('calibration files', () => {
  it('read back what kvpack calibrate wrote, each layer entry naming its layer and the body hashed', () => {
    const file = corrupt(() => {});
    expect(readCalibration(file, identity)).toEqual(calibration);
    const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Json;
    expect(raw.layers.map((l: Json) => l.layer)).toEqual([0, 1]);
    expect(raw.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each<[string, (b: Json) => void, RegExp]>([
    ['swapped layers', (b) => b.layers.reverse(), /layers\[0\]: says it is layer 1; layers are out of order/],
    ['a layer left out', (b) => b.layers.pop(), /layers: must hold the model's 2 layers/],
    ['a NaN key threshold', (b) => { b.layers[0].keys.lo = thresholds((x) => { x[3] = NaN; })(b.layers[0].keys.lo); }, /layer 0 keys: lo\[3\] is not a finite number/],
    ['an infinite key threshold', (b) => { b.layers[1].rotatedKeys.hi = thresholds((x) => { x[60] = Infinity; })(b.layers[1].rotatedKeys.hi); }, /layer 1 rotatedKeys: hi\[60\] is not a finite number/],
    ['lo above hi', (b) => { b.layers[1].keys.lo = thresholds((x) => { x[5] = 9; })(b.layers[1].keys.lo); }, /layer 1 keys: lo\[5\] = 9 lies above hi\[5\]/],
    ['thresholds of the wrong length', (b) => { b.layers[0].keys.hi = f32Base64([1, 2, 3]); }, /layer 0 keys: hi must hold 64 thresholds/],
    ['unsorted centroids', (b) => { b.layers[1].values.luts[3] = [-0.9, -0.6, -0.1, -0.4, 0.1, 0.3, 0.6, 0.95]; }, /layer 1 values: luts\[3\] not sorted strictly ascending \(entries 2 and 3\)/],
    ['all-zero centroids', (b) => { b.layers[0].keys.luts[2] = [0, 0, 0, 0]; }, /layer 0 keys: luts\[2\] not sorted strictly ascending/],
    ['a NaN centroid (null in JSON)', (b) => { b.layers[0].rotatedKeys.luts[2][1] = null; }, /layer 0 rotatedKeys: luts\[2\]\[1\] is not a finite number/],
    ['a centroid beyond [−1, 1]', (b) => { b.layers[1].keys.luts[2][3] = 1.5; }, /layer 1 keys: luts\[2\]\[3\] = 1.5 lies outside \[−1, 1\]/],
    ['too few centroids', (b) => { b.layers[0].values.luts[3].pop(); }, /layer 0 values: luts\[3\] must hold 8 signposts/],
    ['a non-finite Q-Norm signpost', (b) => { b.layers[0].values.qnorm[3][0] = 'x'; }, /layer 0 values: qnorm\[3\]\[0\] is not a finite number/],
    ['a huge Q-Norm signpost', (b) => { b.layers[1].values.qnorm[2][3] = 1e30; }, /layer 1 values: qnorm\[2\]\[3\] = 1e\+30 lies outside \[−2, 2\]/],
    ['a bit width out of range', (b) => { b.bits = [2, 5]; }, /bits: must list distinct bit widths among 2, 3, 4/],
    ['no tokens', (b) => { b.tokens = -3; }, /tokens: must be a positive integer/],
    ['an outlier fraction out of range', (b) => { b.outliers = 0.9; }, /outliers: must be a fraction from 0 to 0.5/],
    ['no model identity', (b) => { b.model = 'tiny'; }, /model: does not name the model it was calibrated for/],
  ])('%s: refused by name', (_, edit, message) => {
    const file = corrupt(edit);
    expect(() => readCalibration(file, identity)).toThrow(CalibrationError);
    expect(() => readCalibration(file, identity)).toThrow(message);
    expect(() => readCalibration(file, identity)).toThrow(file);
  });

  it('refuses a file edited after kvpack calibrate wrote it (values changed, hash not updated)', () => {
    for (const edit of [(b: Json) => b.layers.reverse(), (b: Json) => { b.layers[0].keys.luts[2][1] = -0.31; }, (b: Json) => { b.outliers = 0; }]) {
      const file = corrupt(edit, false);
      expect(() => readCalibration(file, identity)).toThrow(/was edited after kvpack calibrate wrote it/);
    }
  });

  it('reads and checks an unchanged file once; a file changed in place (same size) is read again', () => {
    const file = corrupt(() => {});
    const first = readCalibration(file, identity);
    expect(readCalibration(file, identity)).toBe(first);
    const text = fs.readFileSync(file, 'utf8');
    const edited = text.replace('-0.3,', '-0.4,');
    expect(edited).not.toBe(text);
    expect(edited.length).toBe(text.length);
    fs.writeFileSync(file, edited);
    expect(() => readCalibration(file, identity)).toThrow(/was edited after kvpack calibrate wrote it/);
  });

  it('refuses an older format, asking to calibrate again', () => {
    const file = corrupt((b) => { b.version = 1; });
    expect(() => readCalibration(file, identity)).toThrow(/is calibration format version 1; this kvpack reads version 2 \(run kvpack calibrate again\)/);
  });

  it('refuses a file too large to be a calibration for the model before reading it', () => {
    const file = path.join(dir, 'large.calib');
    fs.writeFileSync(file, Buffer.alloc(4 * 2 ** 20, 0x20));
    expect(() => readCalibration(file, identity)).toThrow(/holds more than the \d+ bytes a calibration for this model can/);
  });

  it('refuses what is not a calibration file without quoting it', () => {
    const file = path.join(dir, 'secret.txt');
    fs.writeFileSync(file, 'SECRET=hunter2\n');
    expect(() => readCalibration(file, identity)).toThrow(/is not JSON, so not a kvpack calibration file/);
    for (const f of [file, '/proc/self/environ']) {
      expect(() => readCalibration(f, identity)).toThrow(CalibrationError);
      try {
        readCalibration(f, identity);
      } catch (e) {
        expect((e as Error).message).not.toMatch(/SECRET|hunter2|PATH=|HOME=|"/);
      }
    }
    expect(() => readCalibration(path.join(dir, 'none.calib'), identity)).toThrow(/does not exist; make one with kvpack calibrate/);
  });

  it('refuses a FIFO, a device and a directory at once, without blocking on them or reading them', () => {
    const fifo = path.join(dir, 'fifo.calib');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    // in a child process (the built reader) with a deadline: a read that blocks would hang the test runner itself
    const script = `
      import { readCalibration } from ${JSON.stringify(path.resolve('dist/cache/quant/calibfile.js'))};
      for (const f of process.argv.slice(1)) {
        try { readCalibration(f, ${JSON.stringify(identity)}); console.log('read', f); } catch (e) { console.log(e.message); }
      }`;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script, fifo, '/dev/zero', dir], { encoding: 'utf8', timeout: 20_000 });
    expect(run.signal).toBeNull();
    expect(run.stdout.trim().split('\n')).toEqual([fifo, '/dev/zero', dir].map((f) => `${f}: is not a regular file, so not a calibration file; make one with kvpack calibrate`));
  });

  it('kvpack calibrate never writes a file the reader refuses', () => {
    const file = path.join(dir, 'degenerate.calib');
    const degenerate = structuredClone(calibration);
    degenerate.layers[1]!.values.luts[2] = [-0.5, 0.1, 0.1, 0.7]; // k-means with fewer distinct numbers than centroids repeats them
    expect(() => writeCalibration(file, degenerate)).toThrow(/not written: the calibration is unusable \(layer 1 values: luts\[2\] not sorted strictly ascending/);
    expect(fs.existsSync(file)).toBe(false);
  });
});
