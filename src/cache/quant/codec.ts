import { f16Table, f32ToF16 } from '../../kernels/half.js';
import { decodeRow } from '../../kernels/packed/reference.js';
import { hadamardRows } from '../../kernels/hadamard.js';
import { DEFAULT_ATTENTION, type CodecAttention, type CodecContext, type MaskingCodec } from '../codec.js';
import { RopeTables } from './rope.js';
import { QuantStore } from './store.js';

/**
 * Hadamard block sizes (src/kernels/hadamard.ts; 0: none). Keys: stored rotated after RoPE, queries rotated
 * alike, so q·k is unchanged and nothing is inverted. Values: stored rotated, so attention gives H·o and
 * the output is rotated back once (H is its own inverse).
 */
export interface Rotation {
  keys: number;
  values: number;
}

export const NO_ROTATION: Rotation = { keys: 0, values: 0 };

/**
 * What the quantized codecs share: a key store and a value store (QuantStore), RoPE tables when keys
 * are kept before RoPE, a residual-ring flush, an optional Hadamard rotation, and attention through
 * `kernels.quantAttention`. The concrete codecs (int.ts, kvquant.ts, turboquant.ts) decide how each new
 * row is quantized; with a rotation they see rotated rows.
 */
export abstract class QuantCodec implements MaskingCodec {
  protected capacity: number;
  /** Angle tables for the kernel when keys are kept before RoPE. */
  protected readonly ropeTables: RopeTables | undefined;
  /** Slots written per layer (the last write's end), for bitsPerValue. */
  protected readonly written: number[];
  /** Slot positions, mirrored for readRow (the kernel reads the cache's own positions). */
  private slotPositions: Int32Array[];

  protected constructor(
    protected readonly ctx: CodecContext,
    readonly keys: QuantStore,
    readonly values: QuantStore,
    protected readonly rotation: Rotation = NO_ROTATION,
  ) {
    const c = ctx.config;
    // a key rotated before RoPE would need the inverse rotation in the kernel before its RoPE: refused where specs are checked
    if (rotation.keys && keys.cfg.rope) throw new Error('internal: keys kept before RoPE cannot be stored rotated');
    this.capacity = ctx.capacity;
    this.ropeTables = keys.cfg.rope ? new RopeTables(ctx.kernels, ctx.rope) : undefined;
    this.written = new Array<number>(c.numLayers).fill(0);
    this.slotPositions = Array.from({ length: c.numLayers }, () => new Int32Array(c.numKvHeads * this.capacity));
  }

  /** Keys rotated at read and sink rows are found by slot position. */
  get readsPositions(): boolean {
    return this.keys.cfg.rope || this.keys.cfg.sinks > 0 || this.values.cfg.sinks > 0;
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
    if (this.ropeTables) {
      let last = 0;
      for (const p of pos) last = Math.max(last, p);
      this.ropeTables.ensure(last);
    } else {
      k.rope(keys, n, c.numKvHeads, positions, this.ctx.rope);
    }
    const floats = n * c.numKvHeads * c.headDim;
    if (this.rotation.keys) hadamardRows(k.arena.f32(keys, floats), this.rotation.keys);
    if (this.rotation.values) {
      const rotated = this.buffer(2, floats);
      const dst = k.arena.f32(rotated, floats);
      dst.set(k.arena.f32(values, floats));
      hadamardRows(dst, this.rotation.values);
      values = rotated;
    }
    for (let t = 0; t < n; t++) for (let h = 0; h < c.numKvHeads; h++) this.slotPositions[layer]![h * this.capacity + from + t] = pos[t]!;
    this.writeRows(layer, from, n, keys, values, pos);
    this.written[layer] = from + n;
  }

  /** Copies of the rows [n × numKvHeads × headDim] at ptr as rows[h][t], for codecs that work on them in JS. */
  protected hostRows(ptr: number, n: number): Float32Array[][] {
    const { kernels: k, config: c } = this.ctx;
    const d = c.headDim;
    const all = k.arena.f32(ptr, n * c.numKvHeads * d);
    return Array.from({ length: c.numKvHeads }, (_, h) => Array.from({ length: n }, (_, t) => all.slice((t * c.numKvHeads + h) * d, (t * c.numKvHeads + h + 1) * d)));
  }

  /** Position of a slot of a head (as written, moved with the slot). */
  protected slotPosition(layer: number, head: number, slot: number): number {
    return this.slotPositions[layer]![head * this.capacity + slot]!;
  }

  /**
   * Quantizes (or buffers) n rows per KV head for slots from + t: keys and values f32 [n × numKvHeads ×
   * headDim] in kernel memory (keys rotated unless the key store applies RoPE), positions [n].
   */
  protected abstract writeRows(layer: number, from: number, n: number, keys: number, values: number, positions: Int32Array): void;

  /** Scratch in kernel memory: 0 and 1 for kernelRows, 2 for rotated values, 3 for rotated queries, 4 on for subclasses. */
  private rowBuffers: number[] = [];
  private rowBufferFloats: number[] = [];

  /** Scratch buffer `which` with room for `floats` f32 numbers (grown by doubling). */
  protected buffer(which: number, floats: number): number {
    const arena = this.ctx.kernels.arena;
    if ((this.rowBufferFloats[which] ?? 0) < floats) {
      if (this.rowBuffers[which]) arena.free(this.rowBuffers[which]!);
      this.rowBufferFloats[which] = Math.max(floats, 2 * (this.rowBufferFloats[which] ?? 0));
      this.rowBuffers[which] = arena.alloc(this.rowBufferFloats[which]! * 4);
    }
    return this.rowBuffers[which]!;
  }

  /**
   * Copies rows into kernel memory for the quantize kernel: row(t, j) for t < n, j < heads, laid out
   * [n × heads × headDim] in buffer `which` (two are kept, e.g. keys and values). Returns its pointer.
   */
  protected kernelRows(which: 0 | 1, n: number, heads: number, row: (t: number, j: number) => ArrayLike<number>): number {
    const d = this.ctx.config.headDim;
    const floats = n * heads * d;
    const ptr = this.buffer(which, floats);
    const buf = this.ctx.kernels.arena.f32(ptr, floats);
    for (let t = 0; t < n; t++) for (let j = 0; j < heads; j++) buf.set(row(t, j), (t * heads + j) * d);
    return ptr;
  }

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
    this.maskedAttention(layer, a, 0);
  }

  maskedAttention(layer: number, a: CodecAttention, mask: number): void {
    const c = this.ctx.config;
    const arena = this.ctx.kernels.arena;
    const floats = a.n * c.numHeads * c.headDim;
    let q = a.q;
    if (this.rotation.keys) {
      q = this.buffer(3, floats);
      const dst = arena.f32(q, floats);
      dst.set(arena.f32(a.q, floats));
      hadamardRows(dst, this.rotation.keys);
    }
    this.ctx.kernels.quantAttention({
      out: a.out, q, n: a.n, visible: a.visible, capacity: this.capacity,
      numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim, scale: this.ctx.rope.scoreScale,
      lastProbs: a.lastProbs, received: a.received, positions: a.positions,
      keys: this.keys.desc(layer), values: this.values.desc(layer),
      ropeLo: this.ropeTables?.lo ?? 0, ropeHi: this.ropeTables?.hi ?? 0, ropeInterleaved: this.ctx.rope.interleaved, mask,
      fast: (this.ctx.attention ?? DEFAULT_ATTENTION) === 'fast',
    });
    if (this.rotation.values) hadamardRows(arena.f32(a.out, floats), this.rotation.values);
  }

  /** What decodeRow needs of the stores' layout. */
  protected geometry(): { capacity: number; headDim: number; positions: number; ropeLo: number; ropeHi: number; ropeInterleaved: boolean } {
    return { capacity: this.capacity, headDim: this.ctx.config.headDim, positions: 0, ropeLo: this.ropeTables?.lo ?? 0, ropeHi: this.ropeTables?.hi ?? 0, ropeInterleaved: this.ctx.rope.interleaved };
  }

  readRow(layer: number, head: number, slot: number, which: 'key' | 'value'): Float32Array {
    const st = which === 'key' ? this.keys : this.values;
    const row = decodeRow(this.ctx.kernels.arena, st.desc(layer), this.geometry(), head, slot, this.slotPositions[layer]![head * this.capacity + slot]!);
    hadamardRows(row, which === 'key' ? this.rotation.keys : this.rotation.values);
    return row;
  }

  bytes(lengths: readonly number[]): number {
    let total = this.ropeTables?.bytes() ?? 0;
    for (let l = 0; l < lengths.length; l++) total += this.keys.bytes(l, lengths[l]!) + this.values.bytes(l, lengths[l]!);
    return total;
  }

  maxBytes(lengths: readonly number[]): number {
    let total = this.ropeTables?.maxBytes(this.ctx.config.maxContext) ?? 0;
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
    for (const p of this.rowBuffers) if (p) this.ctx.kernels.arena.free(p);
    this.rowBuffers = [];
    this.rowBufferFloats = [];
    this.keys.free();
    this.values.free();
    this.ropeTables?.free();
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
