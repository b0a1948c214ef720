import type { Kernels } from '../../kernels/api.js';
import { f32ToF16 } from '../../kernels/half.js';
import { LUT_BYTES, packRow, rowCodeBytes, writeLut, type CodeBits } from '../../kernels/packed/pack.js';
import { clampF16 } from '../../kernels/packed/quantize.js';
import type { QuantKind, QuantStream } from '../../kernels/packed/types.js';
import { midpoints } from './lut.js';

/**
 * How a stream's numbers map to codes. 'int': L[c] = c, scale = (max − min)/(2^b − 1), zero = min;
 * 'unit': sorted levels on [−1, 1], scale = (max − min)/2, zero = (max + min)/2. Codes are assigned by
 * nearest level; the kernel decodes through the layer's LUT (which Q-Norm may have shifted).
 */
export interface Datatype {
  bits: CodeBits;
  kind: QuantKind;
  /** 'unit': the 2^bits sorted levels codes are assigned against. */
  levels: number[];
}

export interface StreamConfig {
  dt: Datatype;
  axis: 'token' | 'channel';
  /** token axis: channels per scale group; channel axis: slots per scale group, 0 = one per head. */
  group: number;
  /** Sparse outlier entries per slot. */
  ocap: number;
  /** Residual f16 rows (0: every token is quantized when written). */
  ringSize: number;
  /** Positions below this are kept as f16 rows. */
  sinks: number;
  rope: boolean;
  /**
   * f16 staging rows per head (kvquant calibration; 0 or absent: none). While a layer is staged
   * (beginStaging … endStaging) every slot s reads staging row s, like a ring with qlen 0.
   */
  staging?: number;
}

const EMPTY_OUTLIER = 0xffff0000;

/**
 * The packed storage of one stream (keys or values) of every layer: codes, scales and zeros, sparse
 * outliers, f16 sink rows and an f16 residual ring, in the layout of src/kernels/packed/types.ts.
 */
export class QuantStore {
  readonly rowBytes: number;
  readonly groups: number;
  /** Per layer, 'unit': f64 thresholds between the levels, in kernel memory for the quantize kernel (0: none). */
  private readonly mids: number[] = [];
  private readonly midsLength: number;
  private codes: number[] = [];
  private params: number[] = [];
  private outliers: number[] = [];
  /** Per layer: the residual ring, or the staging rows while staged (0: none). */
  private readonly rings: number[] = [];
  private readonly sinkRows: number[] = [];
  private readonly luts: number[] = [];
  /** Per layer: slots from here on live in the ring (not quantized yet). */
  readonly qlen: number[];
  private readonly d: number;

  constructor(
    private readonly k: Kernels,
    private readonly numLayers: number,
    private readonly numKv: number,
    headDim: number,
    readonly cfg: StreamConfig,
    private capacity: number,
    decodeLut: readonly number[],
  ) {
    this.d = headDim;
    this.rowBytes = rowCodeBytes(headDim, cfg.dt.bits);
    this.groups = cfg.axis === 'token' && cfg.dt.bits !== 16 ? Math.ceil(headDim / cfg.group) : 0;
    const a = k.arena;
    const mids = cfg.dt.kind === 'unit' ? midpoints(cfg.dt.levels) : new Float64Array(0);
    this.midsLength = mids.length;
    for (let l = 0; l < numLayers; l++) {
      this.mids.push(mids.length ? a.alloc(mids.byteLength) : 0);
      if (mids.length) new Float64Array(a.memory.buffer, this.mids[l]!, mids.length).set(mids);
      this.allocSlots(l, capacity);
      this.rings.push(cfg.ringSize ? a.alloc(numKv * cfg.ringSize * headDim * 2) : 0);
      this.sinkRows.push(cfg.sinks ? a.alloc(numKv * cfg.sinks * headDim * 2) : 0);
      this.luts.push(a.alloc(LUT_BYTES));
      this.setLut(l, decodeLut);
    }
    this.qlen = new Array<number>(numLayers).fill(cfg.ringSize ? 0 : Infinity);
  }

  /** Layer l's own levels (kvquant's calibrated datatypes, 2^bits of them) and the LUT the kernel decodes with. */
  setLevels(l: number, levels: readonly number[], decodeLut: readonly number[] = levels): void {
    const mids = midpoints(levels);
    if (mids.length !== this.midsLength) throw new RangeError(`internal: ${levels.length} levels for a ${this.cfg.dt.bits}-bit stream`);
    new Float64Array(this.k.arena.memory.buffer, this.mids[l]!, mids.length).set(mids);
    this.setLut(l, decodeLut);
  }

  private paramsHeadBytes(capacity: number): number {
    const c = this.cfg;
    if (c.axis === 'token') return capacity * this.groups * 4;
    return (c.group > 0 ? Math.ceil(capacity / c.group) : 1) * this.d * 4;
  }

  private allocSlots(l: number, capacity: number): void {
    const a = this.k.arena;
    this.codes[l] = a.alloc(this.numKv * capacity * this.rowBytes);
    this.params[l] = a.alloc(this.numKv * this.paramsHeadBytes(capacity));
    this.outliers[l] = this.cfg.ocap ? a.alloc(this.numKv * capacity * this.cfg.ocap * 4) : 0;
    if (this.cfg.ocap) new Uint32Array(a.memory.buffer, this.outliers[l], this.numKv * capacity * this.cfg.ocap).fill(EMPTY_OUTLIER);
  }

  setLut(l: number, lut: readonly number[]): void {
    writeLut(this.k.arena.memory.buffer, this.luts[l]!, lut);
  }

  lut(l: number): Float32Array {
    return this.k.arena.f32(this.luts[l]!, 16).slice();
  }

  resize(capacity: number, keep: readonly number[]): void {
    const a = this.k.arena;
    const old = { codes: this.codes, params: this.params, outliers: this.outliers, cap: this.capacity };
    this.codes = [];
    this.params = [];
    this.outliers = [];
    const mem = (): Uint8Array => a.u8(0, a.memory.buffer.byteLength);
    for (let l = 0; l < this.numLayers; l++) {
      this.allocSlots(l, capacity);
      const n = Math.min(keep[l]!, capacity, old.cap);
      const oph = this.paramsHeadBytes(old.cap);
      const nph = this.paramsHeadBytes(capacity);
      for (let h = 0; h < this.numKv; h++) {
        const copy = (dst: number, src: number, bytes: number): void => void mem().copyWithin(dst, src, src + bytes);
        copy(this.codes[l]! + h * capacity * this.rowBytes, old.codes[l]! + h * old.cap * this.rowBytes, n * this.rowBytes);
        copy(this.params[l]! + h * nph, old.params[l]! + h * oph, Math.min(oph, nph));
        if (this.cfg.ocap) {
          const ob = this.cfg.ocap * 4;
          copy(this.outliers[l]! + h * capacity * ob, old.outliers[l]! + h * old.cap * ob, n * ob);
        }
      }
      for (const p of [old.codes[l]!, old.params[l]!, old.outliers[l]!]) if (p) a.free(p);
    }
    this.capacity = capacity;
  }

  /** Copies a slot (codes, per-token scales, outliers; a staged slot's f16 row); only for per-token or fixed-channel streams. */
  move(l: number, h: number, from: number, to: number): void {
    const a = this.k.arena;
    const mem = a.u8(0, a.memory.buffer.byteLength);
    const copy = (base: number, bytes: number): void => {
      const src = base + (h * this.capacity + from) * bytes;
      mem.copyWithin(base + (h * this.capacity + to) * bytes, src, src + bytes);
    };
    if (this.staged(l)) {
      this.ringRow(l, h, to).set(this.ringRow(l, h, from)); // a staged slot is only its f16 row
      return;
    }
    copy(this.codes[l]!, this.rowBytes);
    if (this.cfg.axis === 'token') copy(this.params[l]!, this.groups * 4);
    if (this.cfg.ocap) copy(this.outliers[l]!, this.cfg.ocap * 4);
  }

  /** Outlier entries of a slot: channel indices and their exact values (stored as f16). */
  /** Stores row[idx[e]] at index idx[e] as the sparse outliers of a slot (unused entries empty). */
  writeOutliers(l: number, h: number, slot: number, idx: readonly number[], row: ArrayLike<number>): void {
    const c = this.cfg.ocap;
    if (!c) return;
    const o = new Uint32Array(this.k.arena.memory.buffer, this.outliers[l]! + (h * this.capacity + slot) * c * 4, c);
    o.fill(EMPTY_OUTLIER);
    for (let e = 0; e < Math.min(c, idx.length); e++) o[e] = (f32ToF16(clampF16(row[idx[e]!]!)) | (idx[e]! << 16)) >>> 0;
  }

  /**
   * Quantizes f32 rows in kernel memory, [n × heads × headDim], into slots from + t of KV heads
   * head0 + j (outliers already taken out): on the token axis each group gets its min-max scale and
   * zero, on the channel axis the words set by setChannelParams are used.
   */
  quantizeRows(l: number, src: number, n: number, from: number, head0 = 0, heads = this.numKv): void {
    this.k.quantize({
      src, n, head0, heads, from, capacity: this.capacity, headDim: this.d, stream: this.desc(l),
      kind: this.cfg.dt.kind, mids: this.mids[l]!, midsLength: this.midsLength,
    });
  }

  /**
   * Stores one slot's codes (headDim integers below 2^bits) and its scale/zero words (token axis, one
   * per group), for codecs that assign codes themselves (turboquant).
   */
  writeSlot(l: number, h: number, slot: number, codes: ArrayLike<number>, words: ArrayLike<number>): void {
    if (this.cfg.axis !== 'token' || words.length !== this.groups) throw new RangeError('internal: writeSlot takes one word per group of a token-axis stream');
    packRow(codes, this.cfg.dt.bits, this.k.arena.u8(this.codes[l]! + (h * this.capacity + slot) * this.rowBytes, this.rowBytes));
    new Uint32Array(this.k.arena.memory.buffer, this.params[l]! + h * this.paramsHeadBytes(this.capacity) + slot * this.groups * 4, this.groups).set(words);
  }

  /** Sets the per-channel scale/zero words of token group `tg` (channel axis). */
  setChannelParams(l: number, h: number, tg: number, words: Uint32Array): void {
    new Uint32Array(this.k.arena.memory.buffer, this.params[l]! + h * this.paramsHeadBytes(this.capacity) + tg * this.d * 4, this.d).set(words);
  }

  channelParams(l: number, h: number, tg: number): Uint32Array {
    return new Uint32Array(this.k.arena.memory.buffer, this.params[l]! + h * this.paramsHeadBytes(this.capacity) + tg * this.d * 4, this.d).slice();
  }

  /** Rows of layer l's ring: the residual ring's size, or the staging rows while staged. */
  private ringN(l: number): number {
    return this.cfg.ringSize || (this.rings[l] ? (this.cfg.staging ?? 0) : 0);
  }

  /** Whether layer l is staged: its slots are f16 rows, nothing is quantized yet. */
  staged(l: number): boolean {
    return !this.cfg.ringSize && this.rings[l] !== 0 && this.qlen[l] === 0;
  }

  /** Stages layer l (allocating the staging rows once per staging period): every slot reads row s. */
  beginStaging(l: number): void {
    const n = this.cfg.staging ?? 0;
    if (!n || this.cfg.ringSize) throw new Error('QuantStore.beginStaging: the store has no staging rows');
    if (!this.rings[l]) this.rings[l] = this.k.arena.alloc(this.numKv * n * this.d * 2);
    this.qlen[l] = 0;
  }

  /** Ends staging (the slots must be quantized by now) and frees the staging rows. */
  endStaging(l: number): void {
    if (this.cfg.ringSize) return;
    if (this.rings[l]) this.k.arena.free(this.rings[l]!);
    this.rings[l] = 0;
    this.qlen[l] = Infinity;
  }

  ringRow(l: number, h: number, slot: number): Uint16Array {
    const r = this.ringN(l);
    return this.k.arena.u16(this.rings[l]! + (h * r + (slot % r)) * this.d * 2, this.d);
  }

  sinkRow(l: number, h: number, pos: number): Uint16Array {
    return this.k.arena.u16(this.sinkRows[l]! + (h * this.cfg.sinks + pos) * this.d * 2, this.d);
  }

  desc(l: number): QuantStream {
    const c = this.cfg;
    return {
      codes: this.codes[l]!, bits: c.dt.bits, lut: this.luts[l]!, axis: c.axis, group: c.group,
      params: this.params[l]!, paramsHeadStride: this.paramsHeadBytes(this.capacity),
      outliers: this.outliers[l]!, ocap: c.ocap, ring: this.rings[l]!, ringSize: this.ringN(l),
      qlen: Math.min(this.qlen[l]!, 2 ** 30), sinkRows: this.sinkRows[l]!, sinks: c.sinks, rope: c.rope,
    };
  }

  /** Bits per stored number per slot, everything per-slot counted (codes, per-token scales, outliers). */
  slotBits(): number {
    return this.rowBytes * 8 + this.groups * 32 + this.cfg.ocap * 32;
  }

  /** Real bytes for `len` live slots per head of layer l, shared tables included. */
  bytes(l: number, len: number): number {
    return this.staged(l) ? this.stagedBytes(len) : this.quantizedBytes(len, this.qlen[l]!);
  }

  /** The most `bytes(l, len)` can be in any state: staged (while len fits the staging rows), or quantized up to len. */
  maxBytes(len: number): number {
    const staging = len <= (this.cfg.staging ?? 0) ? this.stagedBytes(len) : 0;
    return Math.max(staging, this.quantizedBytes(len, len));
  }

  private lutBytes(): number {
    return this.cfg.dt.bits <= 4 ? 4 * 2 ** this.cfg.dt.bits : 0;
  }

  /** Live staged rows and sink rows, all f16. */
  private stagedBytes(len: number): number {
    return (len + this.cfg.sinks) * this.d * 2 * this.numKv + this.lutBytes();
  }

  /** `qlen`: slots quantized so far (channel-axis scales exist only for whole groups of them). */
  private quantizedBytes(len: number, qlen: number): number {
    const c = this.cfg;
    let perHead = len * (this.slotBits() / 8);
    if (c.axis === 'channel') perHead += (c.group > 0 ? Math.floor(Math.min(qlen, len) / c.group) : 1) * this.d * 4;
    perHead += (c.ringSize + c.sinks) * this.d * 2;
    if (c.dt.bits === 16) return perHead * this.numKv;
    return perHead * this.numKv + this.lutBytes();
  }

  free(): void {
    const a = this.k.arena;
    for (const p of [...this.codes, ...this.params, ...this.outliers, ...this.rings, ...this.sinkRows, ...this.luts, ...this.mids]) if (p) a.free(p);
    this.codes = [];
    this.params = [];
    this.outliers = [];
  }
}

/** The ocap largest of `score` (> 0 only), indices in descending order of score. */
export function topIndices(score: Float64Array | Float32Array, ocap: number, out: number[] = []): number[] {
  // kept sorted by falling score, an index after those that score as much (as a stable sort would)
  out.length = 0;
  if (ocap <= 0) return out;
  for (let i = 0; i < score.length; i++) {
    const v = score[i]!;
    if (!(v > 0)) continue;
    if (out.length === ocap) {
      if (!(v > score[out[ocap - 1]!]!)) continue;
      out.length = ocap - 1;
    }
    let at = out.length;
    while (at > 0 && score[out[at - 1]!]! < v) at--;
    out.splice(at, 0, i);
  }
  return out;
}
