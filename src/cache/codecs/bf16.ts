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
  protected writeRows(layer: number, from: number, keys: Float32Array[][], values: Float32Array[][]): void {
    for (const [st, rows] of [[this.keys, keys], [this.values, values]] as const) {
      for (let h = 0; h < rows.length; h++) {
        for (let t = 0; t < rows[h]!.length; t++) st.writeCodes(layer, h, from + t, toBf16(rows[h]![t]!));
      }
    }
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

const f = new Float32Array(1);
const u = new Uint32Array(f.buffer);

/** f32 → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function toBf16(x: Float32Array): Uint16Array {
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) {
    f[0] = x[i]!;
    const b = u[0]!;
    out[i] = Number.isNaN(x[i]!) ? (b >>> 16) | 0x40 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

export const bf16: CodecKind = {
  schema: { name: 'bf16', doc: 'keys and values as bfloat16', params: {} },
  ropeOnRead: true,
  create: (_params, ctx) => Bf16Codec.create(ctx),
};
