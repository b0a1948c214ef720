import { UsageError } from '../../errors.js';
import { f16Table, f32ToF16 } from '../../kernels/half.js';
import { decodeRow } from '../../kernels/quant/reference.js';
import type { Codec, CodecAttention, CodecContext } from '../codec.js';
import { RopeTables } from './rope.js';
import { QuantStore } from './store.js';

/**
 * What the quantized codecs share: a key store and a value store (QuantStore), RoPE tables when keys
 * are kept before RoPE, a residual-ring flush, and attention through `kernels.quantAttention`. The
 * concrete codecs (int.ts, kvquant.ts) decide how each new row is quantized.
 */
export abstract class QuantCodec implements Codec {
  protected capacity: number;
  protected readonly rope: RopeTables | undefined;
  /** Slots written per layer (the last write's end), for bitsPerValue. */
  protected readonly written: number[];
  /** Slot positions, mirrored for readRow (the kernel reads the cache's own positions). */
  private slotPositions: Int32Array[];

  protected constructor(
    protected readonly ctx: CodecContext,
    readonly keys: QuantStore,
    readonly values: QuantStore,
  ) {
    const c = ctx.config;
    this.capacity = ctx.capacity;
    this.rope = keys.cfg.rope ? new RopeTables(ctx.kernels, c.headDim, c.ropeTheta) : undefined;
    this.written = new Array<number>(c.numLayers).fill(0);
    this.slotPositions = Array.from({ length: c.numLayers }, () => new Int32Array(c.numKvHeads * this.capacity));
  }

  /** Keys are rotated at write unless the key store applies RoPE itself. */
  get keysBeforeRope(): boolean {
    return this.keys.cfg.rope;
  }

  resize(capacity: number, keep: number[]): void {
    this.keys.resize(capacity, keep);
    this.values.resize(capacity, keep);
    const c = this.ctx.config;
    this.slotPositions = this.slotPositions.map((old, l) => {
      const next = new Int32Array(c.numKvHeads * capacity);
      for (let h = 0; h < c.numKvHeads; h++) next.set(old.subarray(h * this.capacity, h * this.capacity + Math.min(keep[l]!, capacity)), h * capacity);
      return next;
    });
    this.capacity = capacity;
  }

  write(layer: number, from: number, n: number, keys: number, values: number, positions: number): void {
    const { kernels: k, config: c } = this.ctx;
    const pos = k.arena.i32(positions, n).slice();
    if (this.rope) this.rope.ensure(Math.max(...pos));
    else k.rope(keys, n, c.numKvHeads, c.headDim, positions, c.ropeTheta, c.ropeLayout);
    for (let t = 0; t < n; t++) for (let h = 0; h < c.numKvHeads; h++) this.slotPositions[layer]![h * this.capacity + from + t] = pos[t]!;
    const d = c.headDim;
    const rows = (ptr: number): Float32Array[][] => {
      const all = k.arena.f32(ptr, n * c.numKvHeads * d);
      return Array.from({ length: c.numKvHeads }, (_, h) => Array.from({ length: n }, (_, t) => all.slice((t * c.numKvHeads + h) * d, (t * c.numKvHeads + h + 1) * d)));
    };
    this.writeRows(layer, from, rows(keys), rows(values), pos);
    this.written[layer] = from + n;
  }

  /** Position of a slot of a head (as written, moved with the slot). */
  protected slotPosition(layer: number, head: number, slot: number): number {
    return this.slotPositions[layer]![head * this.capacity + slot]!;
  }

  /** Quantizes (or buffers) rows[h][t] for slots from + t. */
  protected abstract writeRows(layer: number, from: number, keys: Float32Array[][], values: Float32Array[][], positions: Int32Array): void;

  /** Keeps row x of slot `slot` as f16 in a store's sink table when its position is a sink. */
  protected keepSink(st: QuantStore, layer: number, h: number, pos: number, x: Float32Array): void {
    if (pos >= 0 && pos < st.cfg.sinks) {
      toF16Row(x, st.sinkRow(layer, h, pos));
    }
  }

  move(layer: number, head: number, from: number, to: number): void {
    this.keys.move(layer, head, from, to);
    this.values.move(layer, head, from, to);
    const p = this.slotPositions[layer]!;
    p[head * this.capacity + to] = p[head * this.capacity + from]!;
  }

  attention(layer: number, a: CodecAttention): void {
    const c = this.ctx.config;
    if (a.mask) throw new UsageError('attention masks (scissorhands mode=reference) need a float codec (fp32, fp16)');
    this.ctx.kernels.quantAttention({
      out: a.out, q: a.q, n: a.n, visible: a.visible, capacity: this.capacity,
      numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim, scale: 1 / Math.sqrt(c.headDim),
      lastProbs: a.lastProbs, received: a.received, positions: a.positions,
      keys: this.keys.desc(layer), values: this.values.desc(layer),
      ropeLo: this.rope?.lo ?? 0, ropeHi: this.rope?.hi ?? 0, ropeInterleaved: c.ropeLayout === 'interleaved',
    });
  }

  readRow(layer: number, head: number, slot: number, which: 'key' | 'value'): Float32Array {
    const c = this.ctx.config;
    const st = which === 'key' ? this.keys : this.values;
    const geometry = { capacity: this.capacity, headDim: c.headDim, positions: 0, ropeLo: this.rope?.lo ?? 0, ropeHi: this.rope?.hi ?? 0, ropeInterleaved: c.ropeLayout === 'interleaved' };
    return decodeRow(this.ctx.kernels.arena, st.desc(layer), geometry, head, slot, this.slotPositions[layer]![head * this.capacity + slot]!);
  }

  bytes(lengths: readonly number[]): number {
    let total = this.rope?.bytes() ?? 0;
    for (let l = 0; l < lengths.length; l++) total += this.keys.bytes(l, lengths[l]!) + this.values.bytes(l, lengths[l]!);
    return total;
  }

  maxBytes(lengths: readonly number[]): number {
    let total = this.rope?.maxBytes(this.ctx.config.maxContext) ?? 0;
    for (const len of lengths) total += this.keys.maxBytes(len) + this.values.maxBytes(len);
    return total;
  }

  /**
   * Stored bits per number: of what is held now when tokens have been written (ring, sinks, tables and
   * per-channel scales included), else the per-slot cost with per-channel scales amortised.
   */
  bitsPerValue(): number {
    const c = this.ctx.config;
    const slots = this.written.reduce((a, b) => a + b, 0) * c.numKvHeads;
    if (slots > 0) return (this.bytes(this.written) * 8) / (2 * slots * c.headDim);
    const amortised = (st: QuantStore): number => st.slotBits() / c.headDim + (st.cfg.axis === 'channel' && st.cfg.group > 0 ? 32 / st.cfg.group : 0);
    return (amortised(this.keys) + amortised(this.values)) / 2;
  }

  free(): void {
    this.keys.free();
    this.values.free();
    this.rope?.free();
  }
}

/** f32 row → f16 row (NaN as 0, clamped to the f16 range). */
export function toF16Row(x: Float32Array, dst: Uint16Array): void {
  for (let i = 0; i < x.length; i++) dst[i] = f32ToF16(Number.isNaN(x[i]!) ? 0 : Math.max(-65504, Math.min(65504, x[i]!)));
}

/** f16 ring row → f32. */
export function ringToF32(row: Uint16Array): Float32Array {
  const t = f16Table();
  return Float32Array.from(row, (h) => t[h]!);
}
