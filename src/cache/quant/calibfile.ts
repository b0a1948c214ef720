import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { CalibrationError } from '../../errors.js';
import { describeIdentity, type ModelIdentity } from '../../model/config.js';

/** Offline statistics of one stream (keys before RoPE, keys after RoPE, or values) of one layer. */
export interface StreamCalibration {
  /** Keys: per (KV head, channel), [numKvHeads × headDim], the thresholds beyond which numbers are outliers. */
  lo?: Float32Array;
  hi?: Float32Array;
  /** Per bit width: the k-means signposts on [−1, 1] (sorted) and their Q-Norm shifted version. */
  luts: Record<number, number[]>;
  qnorm: Record<number, number[]>;
}

export interface LayerCalibration {
  keys: StreamCalibration;
  rotatedKeys: StreamCalibration;
  values: StreamCalibration;
}

/** A `kvpack calibrate` result: KVQuant's offline key thresholds and non-uniform datatypes for one model. */
export interface Calibration {
  model: ModelIdentity;
  /** What it was calibrated on, e.g. "c4 docs 1000-1999, 16 × 2048 tokens". */
  data: string;
  tokens: number;
  outliers: number;
  /** Fisher-weighted k-means (false: plain k-means, --unweighted). */
  fisher: boolean;
  seed: number;
  bits: number[];
  layers: LayerCalibration[];
}

const FORMAT = 'kvpack-calibration';
/** 2: each layer entry says which layer it is, and the file carries the sha256 of its body. */
const VERSION = 2;

/**
 * JSON with the thresholds as base64 little-endian f32 (a few KiB for a small model), each layer entry
 * naming its layer, and `sha256`: the hash of the JSON text of everything else, so edits are refused.
 * What it writes is first read back with the reader's checks: kvpack never writes a file it refuses.
 */
export function writeCalibration(file: string, c: Calibration): void {
  const stream = (s: StreamCalibration) => ({ ...s, lo: s.lo && f32ToBase64(s.lo), hi: s.hi && f32ToBase64(s.hi) });
  const body = {
    format: FORMAT, version: VERSION, ...c,
    layers: c.layers.map((l, layer) => ({ layer, keys: stream(l.keys), rotatedKeys: stream(l.rotatedKeys), values: stream(l.values) })),
  };
  const text = JSON.stringify(body);
  const signed = { ...(JSON.parse(text) as object), sha256: sha256(text) };
  try {
    checkValues(file, signed as Record<string, unknown>, c.model);
  } catch (e) {
    if (!(e instanceof CalibrationError)) throw e;
    throw new CalibrationError(file, `not written: the calibration is unusable (${e.problem}); calibrate on more data (--samples, --ctx)`);
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(signed)}\n`);
}

/**
 * Where `kvpack calibrate` saves a model's calibration when given no --out, and where kvquant without
 * calib= looks for one: KVPACK_CACHE_DIR (default $XDG_CACHE_HOME/kvpack, else ~/.cache/kvpack), then
 * calibration/<sha256 of the model's weights>.calib, so any copy or format of the same weights finds it.
 */
export function storedCalibrationFile(model: ModelIdentity, env: NodeJS.ProcessEnv = process.env): string {
  const root = env.KVPACK_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(homedir(), '.cache'), 'kvpack');
  return path.join(root, 'calibration', `${model.weights}.calib`);
}

/**
 * Reads a calibration file and checks it: a regular file of plausible size for `model`, unchanged since
 * kvpack calibrate wrote it (its sha256), made for `model`, and every value usable by name (thresholds
 * finite with lo ≤ hi, signposts finite and strictly ascending, layers in order). Otherwise a
 * CalibrationError naming the file and the field; it never quotes the file's contents. A file read and
 * checked before, unchanged (by fstat), is not read again: a server's sessions share the operator's.
 * The result is shared: read it, never change it.
 */
export function readCalibration(file: string, model: ModelIdentity): Calibration {
  const cap = largestCalibrationBytes(model);
  const fd = openRegular(file, cap);
  try {
    const stat = fs.fstatSync(fd);
    const key = JSON.stringify([stat.dev, stat.ino, stat.size, stat.mtimeMs, stat.ctimeMs, { ...model, name: '' }]);
    const known = checked.get(key);
    if (known) return known;
    const calibration = parseCalibration(file, readCapped(file, fd, cap), model);
    if (checked.size >= CHECKED_FILES) checked.delete(checked.keys().next().value!);
    checked.set(key, calibration);
    return calibration;
  } finally {
    fs.closeSync(fd);
  }
}

/** Calibrations read and checked, by the file's fstat and the model; a process uses one or two. */
const checked = new Map<string, Calibration>();
const CHECKED_FILES = 8;

function parseCalibration(file: string, text: string, model: ModelIdentity): Calibration {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CalibrationError(file, 'is not JSON, so not a kvpack calibration file; make one with kvpack calibrate');
  }
  if (!isObject(raw) || raw.format !== FORMAT) throw new CalibrationError(file, 'is not a kvpack calibration file; make one with kvpack calibrate');
  if (raw.version !== VERSION) {
    const version = typeof raw.version === 'number' ? raw.version : 'unknown';
    throw new CalibrationError(file, `is calibration format version ${version}; this kvpack reads version ${VERSION} (run kvpack calibrate again)`);
  }
  const { sha256: stated, ...body } = raw;
  if (stated !== sha256(JSON.stringify(body))) {
    throw new CalibrationError(file, 'was edited after kvpack calibrate wrote it (its sha256 does not match its contents); run kvpack calibrate again');
  }
  return checkValues(file, raw, model);
}

/** The file's values by name, for `model` (the one in use, or the file's own when writing). */
function checkValues(file: string, raw: Record<string, unknown>, model: ModelIdentity): Calibration {
  const fail = (problem: string): never => {
    throw new CalibrationError(file, problem);
  };
  const mine = raw.model;
  if (!isIdentity(mine)) fail('model: does not name the model it was calibrated for');
  const m = mine as ModelIdentity;
  if (!(Object.keys(model) as (keyof ModelIdentity)[]).every((key) => key === 'name' || m[key] === model[key])) {
    fail(`was calibrated for ${describeIdentity(m)}, not for the model in use, ${describeIdentity(model)}`);
  }
  if (typeof raw.data !== 'string') fail('data: must say what it was calibrated on');
  if (!isCount(raw.tokens) || raw.tokens < 1) fail('tokens: must be a positive integer');
  if (typeof raw.outliers !== 'number' || !(raw.outliers >= 0 && raw.outliers <= 0.5)) fail('outliers: must be a fraction from 0 to 0.5');
  if (typeof raw.fisher !== 'boolean') fail('fisher: must be true or false');
  if (!isCount(raw.seed)) fail('seed: must be a non-negative integer');
  const bits = raw.bits;
  if (!Array.isArray(bits) || bits.length === 0 || bits.some((b, i) => !BITS.includes(b) || bits.indexOf(b) !== i)) {
    fail(`bits: must list distinct bit widths among ${BITS.join(', ')}`);
  }
  const layers = raw.layers;
  if (!Array.isArray(layers) || layers.length !== model.numLayers) fail(`layers: must hold the model's ${model.numLayers} layers`);
  const kvDim = model.numKvHeads * model.headDim;
  const read = (entry: unknown, i: number): LayerCalibration => {
    if (!isObject(entry)) return fail(`layers[${i}]: is not a layer entry`);
    if (entry.layer !== i) fail(`layers[${i}]: ${isCount(entry.layer) ? `says it is layer ${entry.layer}` : 'does not say which layer it is'}; layers are out of order`);
    const stream = (name: 'keys' | 'rotatedKeys' | 'values'): StreamCalibration => checkStream(entry[name], `layer ${i} ${name}`, bits as number[], name === 'values' ? 0 : kvDim, fail);
    return { keys: stream('keys'), rotatedKeys: stream('rotatedKeys'), values: stream('values') };
  };
  return {
    model: m, data: raw.data as string, tokens: raw.tokens as number, outliers: raw.outliers as number,
    fisher: raw.fisher as boolean, seed: raw.seed as number, bits: bits as number[], layers: (layers as unknown[]).map(read),
  };
}

const BITS: unknown[] = [2, 3, 4];

/**
 * One stream's statistics: kvDim thresholds lo ≤ hi (keys; kvDim 0: none), and per bit width the
 * k-means signposts, finite, strictly ascending, on [−1, 1], and their Q-Norm version, finite,
 * strictly ascending (Q-Norm is an increasing affine map of them) and within ±2 (it shifts and
 * scales by the calibration numbers' mean and spread, themselves on [−1, 1]).
 */
function checkStream(s: unknown, where: string, bits: readonly number[], kvDim: number, fail: (problem: string) => never): StreamCalibration {
  if (!isObject(s)) return fail(`${where}: missing`);
  const table = (name: 'luts' | 'qnorm', b: number, bound: number): number[] => {
    const field = `${where}: ${name}[${b}]`;
    const list = isObject(s[name]) ? (s[name] as Record<string, unknown>)[b] : undefined;
    if (!Array.isArray(list) || list.length !== 2 ** b) return fail(`${field} must hold ${2 ** b} signposts`);
    list.forEach((x: unknown, j) => {
      if (typeof x !== 'number' || !Number.isFinite(x)) fail(`${field}[${j}] is not a finite number`);
      if (Math.abs(x as number) > bound) fail(`${field}[${j}] = ${String(x)} lies outside [−${bound}, ${bound}]`);
      if (j > 0 && !((x as number) > list[j - 1])) fail(`${field} not sorted strictly ascending (entries ${j - 1} and ${j})`);
    });
    return list as number[];
  };
  const luts: Record<number, number[]> = {};
  const qnorm: Record<number, number[]> = {};
  for (const b of bits) {
    luts[b] = table('luts', b, 1);
    qnorm[b] = table('qnorm', b, 2);
  }
  if (kvDim === 0) return { luts, qnorm };
  const vec = (name: 'lo' | 'hi'): Float32Array => {
    const out = typeof s[name] === 'string' ? base64ToF32(s[name]) : undefined;
    if (out?.length !== kvDim) return fail(`${where}: ${name} must hold ${kvDim} thresholds`);
    const bad = out.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) fail(`${where}: ${name}[${bad}] is not a finite number`);
    return out;
  };
  const lo = vec('lo');
  const hi = vec('hi');
  const crossed = lo.findIndex((x, i) => x > hi[i]!);
  if (crossed >= 0) fail(`${where}: lo[${crossed}] = ${lo[crossed]} lies above hi[${crossed}] = ${hi[crossed]}`);
  return { lo, hi, luts, qnorm };
}

/**
 * The most bytes a calibration file for `model` can hold, with room to spare: per layer four
 * threshold vectors in base64 and six signpost lists of at most 4 + 8 + 16 numbers (≤ 32 characters
 * each), four times over, plus 64 KiB for the rest.
 */
function largestCalibrationBytes(model: ModelIdentity): number {
  const perLayer = 4 * Math.ceil((model.numKvHeads * model.headDim * 4) / 3) * 4 + 6 * 28 * 32;
  return 4 * (model.numLayers * perLayer) + 64 * 1024;
}

/**
 * The file opened, if it is a regular file of at most `cap` bytes: checked with fstat before anything
 * is read (opened non-blocking, so a FIFO cannot stall the process).
 */
function openRegular(file: string, cap: number): number {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CalibrationError(file, code === 'ENOENT' ? 'does not exist; make one with kvpack calibrate' : `cannot be opened (${code ?? 'error'})`);
  }
  const stat = fs.fstatSync(fd);
  const problem = !stat.isFile() ? 'is not a regular file, so not a calibration file' : stat.size > cap ? tooLarge(cap) : undefined;
  if (problem === undefined) return fd;
  fs.closeSync(fd);
  throw new CalibrationError(file, `${problem}; make one with kvpack calibrate`);
}

/** Its text, read no further than the cap (files like /proc's report size 0 and hold more). */
function readCapped(file: string, fd: number, cap: number): string {
  const buf = Buffer.alloc(cap + 1);
  let n = 0;
  for (let got = 1; got > 0 && n < buf.length; n += got) got = fs.readSync(fd, buf, n, buf.length - n, null);
  if (n > cap) throw new CalibrationError(file, `${tooLarge(cap)}; make one with kvpack calibrate`);
  return buf.toString('utf8', 0, n);
}

const tooLarge = (cap: number): string => `holds more than the ${cap} bytes a calibration for this model can, so it is not one`;

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
const isCount = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
const IDENTITY_TEXT = ['name', 'architecture', 'ropeLayout', 'weights'] as const;
const IDENTITY_COUNTS = ['numLayers', 'hiddenSize', 'numHeads', 'numKvHeads', 'headDim', 'vocabSize'] as const;
const isIdentity = (x: unknown): x is ModelIdentity =>
  isObject(x) && IDENTITY_TEXT.every((k) => typeof x[k] === 'string') && IDENTITY_COUNTS.every((k) => isCount(x[k]));
function f32ToBase64(x: Float32Array): string {
  const le = new DataView(new ArrayBuffer(x.length * 4));
  x.forEach((v, i) => le.setFloat32(i * 4, v, true));
  return Buffer.from(le.buffer).toString('base64');
}

function base64ToF32(s: string): Float32Array {
  const bytes = Buffer.from(s, 'base64');
  if (bytes.length % 4) return new Float32Array();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Float32Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
}
