import type { CodecContext, CodecKind } from '../codec.js';
import { QuantCodec } from '../quant/codec.js';
import { QuantStore, type StreamConfig } from '../quant/store.js';

/**
 * bf16: keys and values as bfloat16 (8 exponent bits, 7 mantissa bits: f32's range at half its
 * size). Stored as 16-bit codes of the packed store, which the quantized attention kernel widens to
 * f32 in its tiles (a shift, no scale or zero). Keys are rotated at write, or kept before RoPE and
 * rotated in the kernel when streaming.
 */
class Bf16Codec extends QuantCodec {
  protected writeRows(layer: number, from: number, n: number, keys: number, values: number): void {
    this.keys.quantizeRows(layer, keys, n, from);
    this.values.quantizeRows(layer, values, n, from);
  }

  static create(ctx: CodecContext): Bf16Codec {
    const c = ctx.config;
    const store = (rope: boolean): QuantStore => {
      const cfg: StreamConfig = { dt: { bits: 16, kind: 'int', levels: [] }, axis: 'token', group: c.headDim, ocap: 0, ringSize: 0, sinks: 0, rope };
      return new QuantStore(ctx.kernels, c.numLayers, c.numKvHeads, c.headDim, cfg, ctx.capacity, [0]);
    };
    return new Bf16Codec(ctx, store(ctx.ropeOnRead), store(false));
  }
}

export const bf16: CodecKind = {
  schema: { name: 'bf16', doc: 'keys and values as bfloat16', params: {} },
  ropeOnRead: true,
  create: (_params, ctx) => Bf16Codec.create(ctx),
};
