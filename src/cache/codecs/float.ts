import type { SlotDType } from '../../kernels/api.js';
import { f16Table } from '../../kernels/half.js';
import type { CodecAttention, CodecContext, CodecKind, MaskingCodec } from '../codec.js';

/**
 * Keys and values as plain f32 or f16 numbers. Keys are rotated (RoPE) when written, so attention
 * reads them as they are. When streaming (ropeOnRead), keys are stored before RoPE and each
 * attention call rotates the visible ones (the ropeRows kernel) into an f32 scratch store at the
 * positions the cache gives, since those positions change as tokens are evicted; fp16's rotated keys
 * stay f32 (attention reads f32 keys beside f16 values).
 */
class FloatCodec implements MaskingCodec {
  private keys: number[] = [];
  private values: number[] = [];
  private capacity: number;
  private readonly bytesPerNumber: number;

  constructor(private readonly dtype: SlotDType, private readonly ctx: CodecContext) {
    this.bytesPerNumber = dtype === 'f32' ? 4 : 2;
    this.capacity = ctx.capacity;
    for (let l = 0; l < ctx.config.numLayers; l++) {
      this.keys.push(this.allocStore());
      this.values.push(this.allocStore());
    }
  }

  private get rowBytes(): number {
    return this.ctx.config.headDim * this.bytesPerNumber;
  }

  private allocStore(): number {
    return this.ctx.kernels.arena.alloc(this.ctx.config.numKvHeads * this.capacity * this.rowBytes);
  }

  resize(capacity: number, keep: number[]): void {
    const old = { keys: this.keys, values: this.values, capacity: this.capacity };
    const arena = this.ctx.kernels.arena;
    this.capacity = capacity;
    this.keys = [];
    this.values = [];
    for (let l = 0; l < this.ctx.config.numLayers; l++) {
      this.keys.push(this.allocStore());
      this.values.push(this.allocStore());
      const mem = arena.u8(0, arena.memory.buffer.byteLength);
      for (let h = 0; h < this.ctx.config.numKvHeads; h++) {
        const bytes = Math.min(keep[l]!, capacity) * this.rowBytes;
        const from = h * old.capacity * this.rowBytes;
        const to = h * capacity * this.rowBytes;
        mem.copyWithin(this.keys[l]! + to, old.keys[l]! + from, old.keys[l]! + from + bytes);
        mem.copyWithin(this.values[l]! + to, old.values[l]! + from, old.values[l]! + from + bytes);
      }
      arena.free(old.keys[l]!);
      arena.free(old.values[l]!);
    }
  }

  write(layer: number, from: number, n: number, keys: number, values: number, positions: number): void {
    const { kernels: k, config: c } = this.ctx;
    if (!this.ctx.ropeOnRead) k.rope(keys, n, c.numKvHeads, positions, this.ctx.rope);
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const slot = h * this.capacity + from + t;
        const src = (t * c.numKvHeads + h) * c.headDim * 4;
        this.copyRow(this.keys[layer]! + slot * this.rowBytes, keys + src);
        this.copyRow(this.values[layer]! + slot * this.rowBytes, values + src);
      }
    }
  }

  move(layer: number, head: number, from: number, to: number): void {
    const arena = this.ctx.kernels.arena;
    const mem = arena.u8(0, arena.memory.buffer.byteLength);
    const base = head * this.capacity;
    for (const store of [this.keys[layer]!, this.values[layer]!]) {
      const src = store + (base + from) * this.rowBytes;
      mem.copyWithin(store + (base + to) * this.rowBytes, src, src + this.rowBytes);
    }
  }

  get readsPositions(): boolean {
    return this.ctx.ropeOnRead;
  }

  attention(layer: number, a: CodecAttention): void {
    this.maskedAttention(layer, a, 0);
  }

  maskedAttention(layer: number, a: CodecAttention, mask: number): void {
    const c = this.ctx.config;
    const keys = this.ctx.ropeOnRead ? this.rotatedKeys(layer, a.visible + a.n - 1, a.positions) : this.keys[layer]!;
    this.ctx.kernels.attention({
      out: a.out, q: a.q, n: a.n,
      keys, values: this.values[layer]!, dtype: this.dtype, keyDtype: this.ctx.ropeOnRead ? 'f32' : undefined,
      capacity: this.capacity, visible: a.visible,
      numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: c.headDim,
      scale: this.ctx.rope.scoreScale,
      lastProbs: a.lastProbs, received: a.received, mask,
    });
  }

  readRow(layer: number, head: number, slot: number, which: 'key' | 'value'): Float32Array {
    const { kernels: k, config: c } = this.ctx;
    const ptr = (which === 'key' ? this.keys : this.values)[layer]! + (head * this.capacity + slot) * this.rowBytes;
    if (this.dtype === 'f32') return k.arena.f32(ptr, c.headDim).slice();
    const table = f16Table();
    return Float32Array.from(k.arena.u16(ptr, c.headDim), (h) => table[h]!);
  }

  bytes(lengths: readonly number[]): number {
    const slots = lengths.reduce((a, b) => a + b, 0) * this.ctx.config.numKvHeads;
    return slots * 2 * this.rowBytes;
  }

  bitsPerValue(): number {
    return this.bytesPerNumber * 8;
  }

  private rotated = 0;
  private rotatedBytes = 0;

  /** The first `count` keys of every head of a layer, rotated by their positions into f32 rows, in the store's layout. */
  private rotatedKeys(layer: number, count: number, positions: number): number {
    const { kernels: k, config: c } = this.ctx;
    const bytes = c.numKvHeads * this.capacity * c.headDim * 4;
    if (this.rotatedBytes < bytes) {
      if (this.rotated) k.arena.free(this.rotated);
      this.rotated = k.arena.alloc(bytes);
      this.rotatedBytes = bytes;
    }
    k.ropeRows(this.rotated, this.keys[layer]!, this.dtype, count, c.numKvHeads, this.capacity, positions, this.ctx.rope);
    return this.rotated;
  }

  free(): void {
    if (this.rotated) this.ctx.kernels.arena.free(this.rotated);
    for (const p of [...this.keys, ...this.values]) this.ctx.kernels.arena.free(p);
    this.keys = [];
    this.values = [];
  }

  private copyRow(dst: number, src: number): void {
    const { kernels: k, config: c } = this.ctx;
    if (this.dtype === 'f16') k.toF16(dst, src, c.headDim);
    else k.arena.f32(dst, c.headDim).set(k.arena.f32(src, c.headDim));
  }
}

const floatKind = (name: string, dtype: SlotDType, doc: string): CodecKind => ({
  schema: { name, doc, params: {} },
  create: (_params, ctx) => new FloatCodec(dtype, ctx),
  ropeOnRead: true,
  masks: true,
});

export const fp32 = floatKind('fp32', 'f32', 'keys and values as 32-bit floats');
export const fp16 = floatKind('fp16', 'f16', 'keys and values as 16-bit floats');
