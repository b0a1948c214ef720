import { rangeParams } from '../../kernels/packed/quantize.js';
import { int as integer, oneOf, optional, type Infer } from '../../util/schema.js';
import { codecKind, type CodecContext } from '../codec.js';
import { QuantCodec, ringToF32, toF16Row, type Rotation } from '../quant/codec.js';
import { intLut } from '../quant/lut.js';
import { ROTATE_PARAMS, rotationOf } from '../quant/rotation.js';
import { QuantStore, type StreamConfig } from '../quant/store.js';

/**
 * int(bits, axis, group, residual): asymmetric min-max integer codes, scale and zero as f16 per group.
 *   axis=token:   one scale/zero per token per `group` channels (FlexGen: group 64; HF QuantizedCache).
 *   axis=channel: one scale/zero per channel per `group` consecutive tokens (KIVI keys); a group is
 *                 quantized when it fills, the tokens before that stay f16 in a residual ring.
 *   residual=N:   the last N tokens always stay f16 (KIVI keeps 128); with axis=channel a group of
 *                 `group` older tokens is quantized once it fills, so N to N + group − 1 tokens are f16.
 * k…/v… parameters set keys and values apart, e.g. KIVI-2 = int(kbits=2,vbits=2,kaxis=channel,
 * vaxis=token,group=32,residual=128). Keys are quantized after RoPE (as KIVI and FlexGen do), except
 * when streaming, where they are kept before RoPE and rotated in the kernel.
 * rotate=hadamard (krotate, vrotate): rows are rotated by a block Hadamard transform before they are
 * quantized (see Rotation in quant/codec.ts); keys only after RoPE, so not when streaming.
 * Eviction: per-channel groups and the residual ring are laid out by slot order, so this codec refuses
 * policies that evict when axis=channel or residual > 0 (see evictionProblem).
 */
class IntCodec extends QuantCodec {
  constructor(ctx: CodecContext, keys: QuantStore, values: QuantStore, private readonly residual: number, rotation: Rotation) {
    super(ctx, keys, values, rotation);
  }

  protected writeRows(layer: number, from: number, n: number, keys: number, values: number): void {
    this.writeStream(this.keys, layer, from, n, keys);
    this.writeStream(this.values, layer, from, n, values);
  }

  private writeStream(st: QuantStore, l: number, from: number, n: number, src: number): void {
    if (!st.cfg.ringSize) {
      st.quantizeRows(l, src, n, from);
      return;
    }
    const rows = this.hostRows(src, n);
    const heads = rows.length;
    st.qlen[l] = Math.min(st.qlen[l]!, from);
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < heads; h++) toF16Row(rows[h]![t]!, st.ringRow(l, h, from + t));
      this.flush(st, l, from + t + 1);
    }
  }

  /** Quantizes ring rows that left the residual window: one token (axis=token) or one group of tokens. */
  private flush(st: QuantStore, l: number, len: number): void {
    const R = this.residual;
    const heads = this.ctx.config.numKvHeads;
    const d = this.ctx.config.headDim;
    if (st.cfg.axis === 'token') {
      while (len - st.qlen[l]! > R) {
        const s = st.qlen[l]!;
        st.quantizeRows(l, this.kernelRows(0, 1, heads, (_, h) => ringToF32(st.ringRow(l, h, s))), 1, s);
        st.qlen[l] = s + 1;
      }
      return;
    }
    const G = st.cfg.group;
    while (len - st.qlen[l]! >= R + G) {
      const s0 = st.qlen[l]!;
      for (let h = 0; h < heads; h++) {
        const rows = Array.from({ length: G }, (_, r) => ringToF32(st.ringRow(l, h, s0 + r)));
        const words = new Uint32Array(d);
        for (let i = 0; i < d; i++) {
          let lo = Infinity;
          let hi = -Infinity;
          for (const row of rows) {
            lo = Math.min(lo, row[i]!);
            hi = Math.max(hi, row[i]!);
          }
          words[i] = rangeParams(st.cfg.dt.kind, st.cfg.dt.bits, lo, hi).word;
        }
        st.setChannelParams(l, h, s0 / G, words);
        st.quantizeRows(l, this.kernelRows(0, G, 1, (r) => rows[r]!), G, s0, h, 1);
      }
      st.qlen[l] = s0 + G;
    }
  }
}

const BITS = [2, 3, 4, 8] as const;
const AXES = ['token', 'channel'] as const;
const GROUPS = [32, 64, 128] as const;

const PARAMS = {
  bits: oneOf(BITS, { default: 4, doc: 'bits per code' }),
  kbits: oneOf(BITS, { optional: true, doc: 'bits per key code (default bits)' }),
  vbits: oneOf(BITS, { optional: true, doc: 'bits per value code (default bits)' }),
  axis: oneOf(AXES, { default: 'token', doc: 'token: groups of channels within a token; channel: groups of tokens within a channel' }),
  kaxis: oneOf(AXES, { optional: true, doc: 'axis for keys (default axis)' }),
  vaxis: oneOf(AXES, { optional: true, doc: 'axis for values (default axis)' }),
  group: oneOf(GROUPS, { default: 64, doc: 'numbers sharing one scale and zero' }),
  kgroup: oneOf(GROUPS, { optional: true, doc: 'group for keys (default group)' }),
  vgroup: oneOf(GROUPS, { optional: true, doc: 'group for values (default group)' }),
  residual: integer({ min: 0, max: 65536, default: 0, doc: 'most recent tokens kept in f16 until quantized' }),
  ...ROTATE_PARAMS,
};

/** The bits, axis and group of keys (prefix k) or values (v): their own if given, else the shared ones. */
function side(p: Infer<typeof PARAMS>, prefix: 'k' | 'v') {
  return {
    bits: p[`${prefix}bits`] ?? p.bits,
    axis: p[`${prefix}axis`] ?? p.axis,
    group: p[`${prefix}group`] ?? p.group,
  };
}

export const int = codecKind({
  schema: {
    name: 'int',
    doc: 'asymmetric min-max integer codes with f16 scale and zero per group (FlexGen, KIVI, HF QuantizedCache)',
    paper: 'Sheng et al., FlexGen, ICML 2023 (arXiv:2303.06865); Liu et al., KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache, ICML 2024 (arXiv:2402.02750)',
    params: PARAMS,
  },
  ropeOnRead: true,
  evictionProblem: (p) => {
    if (side(p, 'k').axis === 'channel' || side(p, 'v').axis === 'channel') {
      return 'int with axis=channel quantizes runs of consecutive tokens together and cannot follow evictions; use axis=token, or the full policy';
    }
    if (p.residual > 0) return 'int with residual>0 keeps its residual window in slot order and cannot follow evictions; use residual=0, or the full policy';
    return undefined;
  },
  create: (p, ctx) => {
    const c = ctx.config;
    const residual = p.residual;
    const stream = (prefix: 'k' | 'v', rope: boolean): QuantStore => {
      const s = side(p, prefix);
      const cfg: StreamConfig = {
        dt: { bits: s.bits, kind: 'int', levels: [] }, axis: s.axis, group: s.group, ocap: 0,
        ringSize: s.axis === 'channel' ? residual + s.group : residual > 0 ? residual + 1 : 0,
        sinks: 0, rope,
      };
      return new QuantStore(ctx.kernels, c.numLayers, c.numKvHeads, c.headDim, cfg, ctx.capacity, intLut(s.bits));
    };
    const rotation = rotationOf(p, c.headDim, 'int', ctx.ropeOnRead ? 'streaming keeps them before RoPE and rotates them at read' : undefined);
    return new IntCodec(ctx, stream('k', ctx.ropeOnRead), stream('v', false), residual, rotation);
  },
});
