import fs from 'node:fs';
import { CalibrationError } from '../../errors.js';

/** What a calibration (or any per-model artefact) belongs to: the architecture, the shape and the weights. */
export interface ModelIdentity {
  /** For messages: the model's file or folder name. */
  name: string;
  architecture: string;
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  ropeLayout: string;
  /** sha256 of the bytes of every weight as uploaded (the dtype and the row order count: a GGUF's permuted Q/K rows differ). */
  weights: string;
}

/** One line naming a model: "ref-6m (llama, 6 layers × 2 KV heads × 64, vocab 8192, weights 3f2a…)". */
export function describeIdentity(m: ModelIdentity): string {
  return `${m.name} (${m.architecture}, ${m.numLayers} layers × ${m.numKvHeads} KV heads × ${m.headDim}, hidden ${m.hiddenSize}, vocab ${m.vocabSize}, weights ${m.weights.slice(0, 12)}…)`;
}

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
const VERSION = 1;

/** JSON with the thresholds as base64 little-endian f32 (a few KiB for a small model). */
export function writeCalibration(file: string, c: Calibration): void {
  const stream = (s: StreamCalibration) => ({ ...s, lo: s.lo && f32ToBase64(s.lo), hi: s.hi && f32ToBase64(s.hi) });
  const body = { format: FORMAT, version: VERSION, ...c, layers: c.layers.map((l) => ({ keys: stream(l.keys), rotatedKeys: stream(l.rotatedKeys), values: stream(l.values) })) };
  fs.writeFileSync(file, `${JSON.stringify(body)}\n`);
}

/** Reads a calibration file and checks it belongs to `model`: otherwise a CalibrationError naming both. */
export function readCalibration(file: string, model: ModelIdentity): Calibration {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new CalibrationError(file, `cannot read a calibration file (${(e as Error).message}); make one with kvpack calibrate`);
  }
  if (raw.format !== FORMAT) throw new CalibrationError(file, 'is not a kvpack calibration file; make one with kvpack calibrate');
  if (raw.version !== VERSION) throw new CalibrationError(file, `is calibration format version ${String(raw.version)}; this kvpack reads version ${VERSION} (run kvpack calibrate again)`);
  const { format: _format, version: _version, ...c } = raw as unknown as Calibration & { format: string; version: number };
  const mine = c.model;
  const same = mine && (Object.keys(model) as (keyof ModelIdentity)[]).every((key) => key === 'name' || mine[key] === model[key]);
  if (!same) {
    throw new CalibrationError(file, `was calibrated for ${mine ? describeIdentity(mine) : 'an unknown model'}, not for the model in use, ${describeIdentity(model)}`);
  }
  const kvDim = model.numKvHeads * model.headDim;
  const stream = (s: StreamCalibration & { lo?: unknown; hi?: unknown }, thresholds: boolean, where: string): StreamCalibration => {
    const vec = (v: unknown, name: string): Float32Array => {
      const out = typeof v === 'string' ? base64ToF32(v) : undefined;
      if (out?.length !== kvDim) throw new CalibrationError(file, `${where}.${name} must hold ${kvDim} thresholds`);
      return out;
    };
    for (const b of c.bits) {
      if (!Array.isArray(s.luts?.[b]) || s.luts[b].length !== 2 ** b || !Array.isArray(s.qnorm?.[b]) || s.qnorm[b].length !== 2 ** b) {
        throw new CalibrationError(file, `${where} has no ${2 ** b}-entry datatype for ${b} bits`);
      }
    }
    return { luts: s.luts, qnorm: s.qnorm, ...(thresholds ? { lo: vec(s.lo, 'lo'), hi: vec(s.hi, 'hi') } : {}) };
  };
  if (!Array.isArray(c.layers) || c.layers.length !== model.numLayers || !Array.isArray(c.bits)) {
    throw new CalibrationError(file, `must hold ${model.numLayers} layers and the bit widths calibrated`);
  }
  return {
    ...c,
    layers: c.layers.map((l, i) => ({
      keys: stream(l.keys, true, `layer ${i} keys`),
      rotatedKeys: stream(l.rotatedKeys, true, `layer ${i} rotatedKeys`),
      values: stream(l.values, false, `layer ${i} values`),
    })),
  };
}

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
