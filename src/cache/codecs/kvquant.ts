import fs from 'node:fs';
import { CalibrationError, UsageError } from '../../errors.js';
import { rangeParams } from '../../kernels/packed/quantize.js';
import { bool, int, number, oneOf, text } from '../../util/schema.js';
import { codecKind, type CodecContext } from '../codec.js';
import { readCalibration, storedCalibrationFile, type Calibration, type LayerCalibration } from '../quant/calibfile.js';
import { QuantCodec, ringToF32, toF16Row, type Rotation } from '../quant/codec.js';
import { ROTATE_PARAMS, rotationOf } from '../quant/rotation.js';
import { midpoints, nearest, normalFloat, uniformLut } from '../quant/lut.js';
import { Moments, OutlierScratch, quantile, valueOutliers } from '../quant/stats.js';
import { QuantStore, topIndices, type Datatype } from '../quant/store.js';

/**
 * kvquant(bits, outliers, sinks, prerope, datatype, qnorm, calibrate, calib): the KVQuant recipe (Hooper et al.,
 * 2024), with attention computed from the packed codes (assembly/packed-attention.ts).
 *
 * Keys: per channel, before RoPE (the kernel rotates each decoded row by its slot's position), one
 *   scale/zero per (layer, KV head, channel) taken from thresholds; values beyond the thresholds are
 *   per-vector sparse outliers (exact f16 + channel index), the dense code holds the clamped value.
 * Values: per token; the `outliers` fraction of entries farthest from the token's median are sparse
 *   outliers and are replaced by the median before the token's min/max is taken (dynamic thresholds).
 * Datatype: non-uniform lookup tables on [−1, 1] (scale = half the range, zero = its middle).
 * Sinks: tokens at positions < sinks are also kept as f16 rows, which the kernel reads instead.
 * Q-Norm: the LUT's signposts are shifted and scaled so that the mean and standard deviation of the
 *   dequantized calibration numbers match those of the numbers themselves (normalised by their
 *   scale/zero): L' = μ + (L − μ̂)·σ/σ̂, one LUT per layer for keys and one for values; codes are still
 *   assigned against the original signposts.
 *
 * Calibration (online, per sequence): a layer's first tokens are staged as f16 rows (attention reads
 *   them as they are, bytes() counts them as f16) until `calibrate` non-sink tokens have been written
 *   to it since its sequence began (a write at slot 0: KVCache.reset empties every layer). Then the
 *   thresholds and Q-Norm statistics are taken from the staged rows that are still held plus that
 *   write's rows, the staged rows are quantized in place and the staging rows freed; every later token
 *   is quantized when written. A first write of ≥ `calibrate` tokens (a chunk, a long prompt) is
 *   calibrated on directly, so decode mode and one-token prompts get the same statistics as chunks.
 *
 * With calib=FILE (kvpack calibrate, src/calibrate/), as the paper does: key thresholds per channel are
 *   the file's offline percentiles (before or after RoPE, as `prerope` says), fixed from the first token
 *   (nothing is staged); datatype=nuq (the default then) assigns and decodes codes with each layer's
 *   Fisher-weighted k-means signposts for keys and for values, qnorm=true decodes with their Q-Norm
 *   version; `outliers` must be what the file was made with.
 *
 * rotate=hadamard (krotate, vrotate; quant/rotation.ts): rows rotated by a block Hadamard transform before
 *   they are quantized and calibrated on; keys only with prerope=false (refused before RoPE), and not with
 *   a calibration file, whose statistics are of unrotated numbers (the stored file is then not used).
 *
 * Deviations from the paper:
 * - Without a file, key thresholds are not calibrated offline: they are the outliers/2 and
 *   1 − outliers/2 percentiles of each channel over the calibration tokens above, and stay fixed for
 *   the rest of the sequence; later keys beyond them become outliers or are clamped; datatype=nf
 *   (default then) uses NormalFloat signposts (lut.ts).
 * - Outliers are stored per slot in a fixed number of entries, ceil(outliers·headDim) per vector
 *   (the paper's CSR/CSC lists are variable-length); when more keys of a token exceed the thresholds,
 *   the largest excursions are kept and the rest clamp. Entries are 32 bits (f16 value, u16 index).
 * - Without a file, Q-Norm statistics come from the same calibration tokens, not an offline calibration set.
 */
class KVQuantCodec extends QuantCodec {
  private readonly calibrated: boolean[];
  /** Whether this sequence's first tokens were held as f16 rows (a first write shorter than `calibrate`). */
  private staging = false;
  /** Per layer: non-sink tokens written since the sequence began (while not calibrated). */
  private readonly seen: number[];
  /** [layer][head]: key thresholds and their scale/zero words per channel. */
  private readonly keyLo: Float32Array[][];
  private readonly keyHi: Float32Array[][];
  private readonly keyWords: Uint32Array[][];
  /** Reused per row by the outlier selection (the write path allocates nothing per row). */
  private readonly outlierScratch: OutlierScratch;

  constructor(ctx: CodecContext, keys: QuantStore, values: QuantStore, private readonly o: KVQuantOptions, rotation: Rotation) {
    super(ctx, keys, values, rotation);
    const c = ctx.config;
    this.outlierScratch = new OutlierScratch(c.headDim);
    this.calibrated = new Array<boolean>(c.numLayers).fill(false);
    this.seen = new Array<number>(c.numLayers).fill(0);
    const per = <T>(f: () => T): T[][] => Array.from({ length: c.numLayers }, () => Array.from({ length: c.numKvHeads }, f));
    this.keyLo = per(() => new Float32Array(c.headDim));
    this.keyHi = per(() => new Float32Array(c.headDim));
    this.keyWords = per(() => new Uint32Array(c.headDim));
    if (o.offline) this.useCalibration(o.offline);
  }

  /**
   * What a reader of this cache's numbers should know: the calibration file found in the store, or,
   * without one, that each sequence's first tokens are held as f16 rows until they are calibrated on.
   */
  note(): string | undefined {
    if (this.o.stored) return `kvquant: using calibration ${this.o.stored} (made by kvpack calibrate)`;
    if (this.o.offline) return undefined;
    const first = `its first ${this.o.calibrate} tokens`;
    const how = !this.staging
      ? `key thresholds come from each sequence's own first ${this.o.calibrate} tokens`
      : this.calibrated.some((done) => !done)
        ? `each layer keeps ${first} as f16 rows to calibrate on before quantizing them; this sequence has not reached them yet, so its cache is f16 rows, larger than fp16`
        : `each layer kept ${first} as f16 rows to calibrate on before quantizing them; the peak counts them`;
    return `kvquant: no calibration file, so ${how}. kvpack calibrate makes a file that kvquant uses by itself`;
  }

  /** Offline thresholds (and, for nuq, each layer's datatypes) from a calibration file: nothing is staged. */
  private useCalibration(offline: NonNullable<KVQuantOptions['offline']>): void {
    const d = this.ctx.config.headDim;
    const { bits, kind } = this.o.dt;
    offline.layers.forEach((layer, l) => {
      const keys = layer[offline.keyStream];
      for (let h = 0; h < this.keyLo[l]!.length; h++) {
        this.keyLo[l]![h]!.set(keys.lo!.subarray(h * d, (h + 1) * d));
        this.keyHi[l]![h]!.set(keys.hi!.subarray(h * d, (h + 1) * d));
        for (let i = 0; i < d; i++) this.keyWords[l]![h]![i] = rangeParams(kind, bits, this.keyLo[l]![h]![i]!, this.keyHi[l]![h]![i]!).word;
        this.keys.setChannelParams(l, h, 0, this.keyWords[l]![h]!);
      }
      if (offline.nuq) {
        this.keys.setLevels(l, keys.luts[bits]!, this.o.qnorm ? keys.qnorm[bits] : undefined);
        this.values.setLevels(l, layer.values.luts[bits]!, this.o.qnorm ? layer.values.qnorm[bits] : undefined);
      }
      this.calibrated[l] = true;
    });
  }

  protected writeRows(layer: number, from: number, n: number, keysPtr: number, valuesPtr: number, positions: Int32Array): void {
    const keys = this.hostRows(keysPtr, n);
    const values = this.hostRows(valuesPtr, n);
    const sinks = this.keys.cfg.sinks;
    if (from === 0 && !this.o.offline) {
      // a new sequence (the cache was reset): its thresholds come from its own first tokens
      this.calibrated[layer] = false;
      this.seen[layer] = 0;
      if (layer === 0) this.staging = false;
      this.keys.endStaging(layer);
      this.values.endStaging(layer);
    }
    if (!this.calibrated[layer]) {
      for (const p of positions) if (p >= sinks) this.seen[layer]!++;
      // (the staging rows hold calibrate + sinks slots; more live slots than that only with odd positions)
      if (this.seen[layer]! < this.o.calibrate && from + positions.length <= this.o.calibrate + sinks) {
        this.stage(layer, from, keys, values, positions);
        return;
      }
      this.calibrateAndFlush(layer, from, keys, values, positions);
    }
    for (let h = 0; h < keys.length; h++) {
      for (let t = 0; t < positions.length; t++) {
        this.keepSink(this.keys, layer, h, positions[t]!, keys[h]![t]!);
        this.keepSink(this.values, layer, h, positions[t]!, values[h]![t]!);
      }
    }
    this.quantizeSlots(layer, from, keys, values, keysPtr);
  }

  /**
   * Quantizes rows[h][t] into slots from + t: sparse outliers here, dense codes in the quantize kernel
   * (keys against the per-channel words of setChannelParams). keysPtr: the key rows in kernel memory
   * ([n × heads × headDim]) if they are there already.
   */
  private quantizeSlots(l: number, from: number, keys: Float32Array[][], values: Float32Array[][], keysPtr?: number): void {
    const heads = keys.length;
    const n = keys[0]!.length;
    if (n === 0) return;
    for (let h = 0; h < heads; h++) for (let t = 0; t < n; t++) this.keyOutliers(l, h, from + t, keys[h]![t]!);
    const kp = keysPtr ?? this.kernelRows(0, n, heads, (t, h) => keys[h]![t]!);
    const vp = this.kernelRows(1, n, heads, (t, h) => this.valueDense(l, h, from + t, values[h]![t]!, true));
    this.keys.quantizeRows(l, kp, n, from);
    this.values.quantizeRows(l, vp, n, from);
  }

  /** A key's excursions beyond the channel thresholds, largest first, as sparse outliers. */
  private keyOutliers(l: number, h: number, slot: number, x: Float32Array): void {
    if (!this.keys.cfg.ocap) return;
    const lo = this.keyLo[l]![h]!;
    const hi = this.keyHi[l]![h]!;
    const exceed = this.outlierScratch.score;
    for (let i = 0; i < x.length; i++) exceed[i] = x[i]! < lo[i]! ? lo[i]! - x[i]! : x[i]! > hi[i]! ? x[i]! - hi[i]! : 0;
    this.keys.writeOutliers(l, h, slot, topIndices(exceed, this.keys.cfg.ocap, this.outlierScratch.idx), x);
  }

  /** The row with its outliers replaced by the median (dense part), and those outliers stored sparsely. */
  private valueDense(l: number, h: number, slot: number, x: Float32Array, store: boolean): Float32Array {
    const { dense, outliers } = valueOutliers(x, this.values.cfg.ocap, this.outlierScratch);
    if (store && this.values.cfg.ocap) this.values.writeOutliers(l, h, slot, outliers, x);
    return dense;
  }


  /** Keeps rows as f16 staging rows of their slots (and sink rows), not quantized yet. */
  private stage(l: number, from: number, keys: Float32Array[][], values: Float32Array[][], positions: Int32Array): void {
    this.staging = true;
    if (!this.keys.staged(l)) {
      this.keys.beginStaging(l);
      this.values.beginStaging(l);
    }
    for (let h = 0; h < keys.length; h++) {
      for (let t = 0; t < positions.length; t++) {
        this.keepSink(this.keys, l, h, positions[t]!, keys[h]![t]!);
        this.keepSink(this.values, l, h, positions[t]!, values[h]![t]!);
        toF16Row(keys[h]![t]!, this.keys.ringRow(l, h, from + t));
        toF16Row(values[h]![t]!, this.values.ringRow(l, h, from + t));
      }
    }
  }

  /**
   * Thresholds from the non-sink rows of the staged slots [0, from) still held and of this write; then
   * the staged slots are quantized in place from their f16 rows and staging ends.
   */
  private calibrateAndFlush(l: number, from: number, keys: Float32Array[][], values: Float32Array[][], positions: Int32Array): void {
    const sinks = this.keys.cfg.sinks;
    const staged = this.keys.staged(l) ? from : 0;
    const old = (st: QuantStore, h: number): Float32Array[] => Array.from({ length: staged }, (_, s) => ringToF32(st.ringRow(l, h, s)));
    const oldKeys = keys.map((_, h) => old(this.keys, h));
    const oldValues = values.map((_, h) => old(this.values, h));
    const sample = (h: number, rows: Float32Array[][], olds: Float32Array[][]): Float32Array[] => [
      ...olds[h]!.filter((_, s) => this.slotPosition(l, h, s) >= sinks),
      ...rows[h]!.filter((_, t) => positions[t]! >= sinks),
    ];
    this.calibrate(l, keys.map((_, h) => sample(h, keys, oldKeys)), values.map((_, h) => sample(h, values, oldValues)));
    this.quantizeSlots(l, 0, oldKeys, oldValues);
    this.keys.endStaging(l);
    this.values.endStaging(l);
  }

  /** Key thresholds (and Q-Norm LUTs) from calibration rows keys[h][i], values[h][i] (no sinks). */
  private calibrate(l: number, keys: Float32Array[][], values: Float32Array[][]): void {
    const d = this.ctx.config.headDim;
    const q = this.o.outliers / 2;
    const dt = this.o.dt;
    const mids = midpoints(dt.levels);
    const stats = new Moments();
    for (let h = 0; h < keys.length; h++) {
      if (keys[h]!.length === 0) continue; // every non-sink row of this head was evicted: thresholds stay
      for (let i = 0; i < d; i++) {
        const xs = Float64Array.from(keys[h]!, (row) => row[i]!).sort();
        const lo = quantile(xs, q);
        const hi = quantile(xs, 1 - q);
        const p = rangeParams(dt.kind, dt.bits, lo, hi);
        this.keyLo[l]![h]![i] = lo;
        this.keyHi[l]![h]![i] = hi;
        this.keyWords[l]![h]![i] = p.word;
        if (this.o.qnorm && p.s > 0) for (const x of xs) if (x >= lo && x <= hi) stats.add((x - p.z) / p.s, dt.levels[nearest(mids, (x - p.z) / p.s)]!);
      }
      this.keys.setChannelParams(l, h, 0, this.keyWords[l]![h]!);
    }
    if (this.o.qnorm) {
      this.keys.setLut(l, stats.normalise(dt.levels));
      const vs = new Moments();
      for (let h = 0; h < values.length; h++) {
        for (const row of values[h]!) {
          const y = this.valueDense(l, h, 0, row, false);
          let lo = Infinity;
          let hi = -Infinity;
          for (const v of y) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
          const p = rangeParams(dt.kind, dt.bits, lo, hi);
          if (p.s > 0) for (const v of y) vs.add((v - p.z) / p.s, dt.levels[nearest(mids, (v - p.z) / p.s)]!);
        }
      }
      this.values.setLut(l, vs.normalise(dt.levels));
    }
    this.calibrated[l] = true;
  }
}

/** The outlier fraction without calib (and kvpack calibrate's default, which a plan assumes of a file it has not read). */
const DEFAULT_OUTLIERS = 0.01;

interface KVQuantOptions {
  outliers: number;
  qnorm: boolean;
  dt: Datatype;
  calibrate: number;
  /** From calib=FILE: its layers, which key statistics apply (before or after RoPE), and whether its datatypes are used. */
  offline?: { layers: LayerCalibration[]; keyStream: 'keys' | 'rotatedKeys'; nuq: boolean };
  /** The file from the calibration store that calib= did not name (said in note()). */
  stored?: string;
}

export const kvquant = codecKind({
  schema: {
    name: 'kvquant',
    doc: 'KVQuant: per-channel pre-RoPE keys, per-token values, non-uniform datatype, dense-and-sparse outliers, f16 sinks',
    paper: 'Hooper et al., KVQuant: Towards 10 Million Context Length LLM Inference with KV Cache Quantization, NeurIPS 2024 (arXiv:2401.18079)',
    params: {
      bits: oneOf([2, 3, 4], { default: 4, doc: 'bits per code' }),
      outliers: number({ min: 0, max: 0.5, optional: true, doc: 'fraction of each vector kept exactly as sparse outliers (default 0.01, or what calib was made with)' }),
      sinks: int({ min: 0, max: 1024, default: 1, doc: 'first tokens kept in f16' }),
      prerope: bool({ default: true, doc: 'quantize keys before RoPE (RoPE applied in the attention kernel)' }),
      datatype: oneOf(['nuq', 'nf', 'uniform'], {
        optional: true,
        doc: 'code values: nuq (the calibration file\'s k-means datatypes; default with calib), nf (NormalFloat; default without), uniform',
      }),
      qnorm: bool({ default: false, doc: 'Q-Norm: match mean and deviation of dequantized numbers' }),
      calibrate: int({
        min: 1, max: 4096, default: 64,
        doc: 'without calib: non-sink tokens per sequence that key thresholds and Q-Norm statistics come from; they stay f16 until then',
      }),
      calib: text({ optional: true, doc: 'calibration file from kvpack calibrate: offline key thresholds and datatypes' }),
      ...ROTATE_PARAMS,
    },
  },
  ropeOnRead: true,
  create: (p, ctx) => {
    const c = ctx.config;
    const bits = p.bits;
    const prerope = p.prerope || ctx.ropeOnRead;
    const rotation = rotationOf(p, c.headDim, 'kvquant', !prerope ? undefined : ctx.ropeOnRead ? 'streaming keeps them before RoPE' : 'prerope=true quantizes them before RoPE (set prerope=false)');
    const rotated = rotation.keys > 0 || rotation.values > 0;
    if (rotated && p.calib !== undefined) {
      throw new UsageError(`kvquant(calib=${p.calib}) with a rotation: the file's thresholds and datatypes are of unrotated keys and values; leave calib or the rotation out`);
    }
    // measuring bytes (the memory plan, before the model exists) reads no file: bytes depend on its outliers alone;
    // a stored file describes unrotated numbers, so a rotated cache calibrates online
    const stored = p.calib === undefined && !ctx.measureOnly && !rotated ? storedCalibration(ctx, p) : undefined;
    const file = p.calib ?? stored;
    const fromFile = file !== undefined;
    const calib = fromFile && !ctx.measureOnly ? openCalibration(file, ctx, bits) : undefined;
    const datatype = p.datatype ?? (fromFile ? 'nuq' : 'nf');
    const outliers = p.outliers ?? calib?.outliers ?? DEFAULT_OUTLIERS;
    if (calib && outliers !== calib.outliers) {
      throw new UsageError(`kvquant(calib=${p.calib}): the file was calibrated with outliers=${calib.outliers}; use that (or leave outliers out) or calibrate again with --outliers ${outliers}`);
    }
    if (datatype === 'nuq' && !fromFile) {
      throw new UsageError('kvquant(datatype=nuq) needs a calibration file: make one with kvpack calibrate and pass calib=FILE');
    }
    if (fromFile && datatype !== 'nuq' && p.qnorm) {
      throw new UsageError(`kvquant(calib=…,datatype=${datatype},qnorm=true): the file's Q-Norm statistics are for its own datatypes; use datatype=nuq or leave calib out`);
    }
    // nuq: each layer's levels come from the file; uniform signposts stand in until then
    const levels = datatype === 'nf' ? normalFloat(bits) : uniformLut(bits);
    const dt: Datatype = { bits, kind: 'unit', levels };
    const ocap = outliers > 0 ? Math.ceil(outliers * c.headDim) : 0;
    const sinks = p.sinks;
    const calibrate = p.calibrate;
    const staging = fromFile ? 0 : calibrate + sinks;
    const keys = new QuantStore(ctx.kernels, c.numLayers, c.numKvHeads, c.headDim, { dt, axis: 'channel', group: 0, ocap, ringSize: 0, sinks, rope: prerope, staging }, ctx.capacity, levels);
    const values = new QuantStore(ctx.kernels, c.numLayers, c.numKvHeads, c.headDim, { dt, axis: 'token', group: c.headDim, ocap, ringSize: 0, sinks, rope: false, staging }, ctx.capacity, levels);
    const first = ctx.firstLayer ?? 0;
    const offline = calib && { layers: calib.layers.slice(first, first + c.numLayers), keyStream: prerope ? 'keys' as const : 'rotatedKeys' as const, nuq: datatype === 'nuq' };
    return new KVQuantCodec(ctx, keys, values, { outliers, qnorm: p.qnorm, dt, calibrate, offline, stored }, rotation);
  },
});

/**
 * The model's file in the calibration store (kvpack calibrate without --out), when there is one that
 * fits the spec (its bit width, the outliers it names, no Q-Norm over another datatype); kvquant
 * without calib= then calibrates offline, as with calib=FILE, and otherwise online as before.
 */
function storedCalibration(ctx: CodecContext, p: { bits: number; outliers?: number; datatype?: string; qnorm: boolean }): string | undefined {
  if (!ctx.model) return undefined;
  const file = storedCalibrationFile(ctx.model());
  if (!fs.existsSync(file)) return undefined;
  const calib = readCalibration(file, ctx.model());
  const fits = calib.bits.includes(p.bits) && (p.outliers === undefined || p.outliers === calib.outliers) && !(p.qnorm && p.datatype !== undefined && p.datatype !== 'nuq');
  return fits ? file : undefined;
}

/** The calibration file, checked against the cache's model and the bit width. */
function openCalibration(file: string, ctx: CodecContext, bits: number): Calibration {
  if (!ctx.model) throw new UsageError(`kvquant(calib=${file}) needs to know the model it runs for`);
  const calib = readCalibration(file, ctx.model());
  if (!calib.bits.includes(bits)) {
    throw new CalibrationError(file, `holds datatypes for ${calib.bits.join(', ')} bits, not ${bits}; calibrate again with --bits ${bits}`);
  }
  return calib;
}
