import { UsageError } from '../../errors.js';
import { hadamardBlock } from '../../kernels/hadamard.js';
import { f32ToF16 } from '../../kernels/half.js';
import type { Kernels } from '../../kernels/api.js';
import { clampF16, nearest } from '../../kernels/packed/quantize.js';
import { bool, int as integer, oneOf, type Infer } from '../../util/schema.js';
import { codecKind, type Codec, type CodecContext } from '../codec.js';
import { GroupedCodec, LayerGroups } from '../layer-groups.js';
import { QuantCodec } from '../quant/codec.js';
import { intLut, midpoints, turboCentroids } from '../quant/lut.js';
import { QuantStore, type StreamConfig } from '../quant/store.js';
import { fp16 } from './float.js';

/**
 * turboquant(bits, kbits, vbits, nc, boundary): TurboQuant's MSE quantizer for keys (Zandieh et al.,
 * 2025) in the form vLLM's TurboQuant backend runs it.
 *
 * Keys (kbits 2–4): rotated after RoPE by a Sylvester Hadamard transform over the head (its largest
 *   power-of-two block; vLLM: the whole head, no random signs), the query rotated alike once per call.
 *   Per token and head: ‖k‖ and one Lloyd-Max centroid index per rotated coordinate of k/‖k‖ (the
 *   codebook of turboCentroids: optimal for one coordinate of a random unit vector). Decoded, a key
 *   is ‖k‖·c (nc=false: the paper) or ‖k‖·c/‖c‖ (nc=true: vLLM's norm correction, which undoes the
 *   shrinking E‖c‖² < 1), with c the gathered centroids: stored as the packed store's per-token scale
 *   over a centroid LUT, so attention runs on the codes in the quantized attention kernel (LUT scoring).
 * Keys (kbits=8): 8-bit integers per token (min-max), unrotated; vLLM stores FP8 e4m3 there.
 * Values: asymmetric min-max integers over the whole head per token (f16 scale and minimum), unrotated.
 * boundary=N: the model's first N and last N layers stay fp16 (vLLM keeps 2 and 2 by default).
 * vLLM's presets: k8v4 = turboquant(kbits=8,vbits=4), 4bit_nc = turboquant(bits=4), k3v4_nc =
 *   turboquant(kbits=3,vbits=4), 3bit_nc = turboquant(bits=3).
 * Bytes per token and head: codes (d·b/8, in chunks of 64) plus one u32 per row: the f16 norm beside an
 *   unused f16 zero for keys (vLLM stores the norm alone: 2 bytes less), f16 scale and minimum for values.
 * Differences from vLLM: the prompt's own attention reads the quantized cache (vLLM's first chunk
 * attends to exact keys and values); QJL (the paper's inner-product variant) is not offered, as vLLM
 * leaves it out ("hurts attention quality by amplifying variance through softmax").
 */
class TurboQuantCodec extends QuantCodec {
  private readonly codes: Uint8Array;
  private readonly mids: Float64Array;

  constructor(ctx: CodecContext, keys: QuantStore, values: QuantStore, keyBlock: number, private readonly o: { kbits: number; centroids: number[]; nc: boolean }) {
    super(ctx, keys, values, { keys: keyBlock, values: 0 });
    this.codes = new Uint8Array(ctx.config.headDim);
    this.mids = o.centroids.length ? midpoints(o.centroids) : new Float64Array(0);
  }

  protected writeRows(layer: number, from: number, n: number, keys: number, values: number): void {
    if (this.o.kbits === 8) this.keys.quantizeRows(layer, keys, n, from);
    else {
      const rows = this.hostRows(keys, n);
      for (let h = 0; h < rows.length; h++) for (let t = 0; t < n; t++) this.keys.writeSlot(layer, h, from + t, this.codes, [this.encode(rows[h]![t]!)]);
    }
    this.values.quantizeRows(layer, values, n, from);
  }

  /** Codes of a rotated key into this.codes; returns its scale/zero word (f16 scale, zero 0). */
  private encode(x: Float32Array): number {
    let sq = 0;
    for (const v of x) sq += v * v;
    const norm = Math.sqrt(sq);
    const c = this.o.centroids;
    let csq = 0;
    for (let i = 0; i < x.length; i++) {
      const code = nearest(this.mids, norm > 0 ? x[i]! / norm : 0);
      this.codes[i] = code;
      csq += c[code]! * c[code]!;
    }
    const scale = this.o.nc && csq > 0 ? norm / Math.sqrt(csq) : norm;
    return f32ToF16(clampF16(scale));
  }
}

const BITS = [2, 3, 4, 8] as const;

const PARAMS = {
  bits: oneOf(BITS, { default: 4, doc: 'bits per key and value code' }),
  kbits: oneOf(BITS, { optional: true, doc: 'bits per key code (default bits); 8: integers per token, unrotated' }),
  vbits: oneOf(BITS, { optional: true, doc: 'bits per value code (default bits)' }),
  nc: bool({ default: true, doc: "vLLM's norm correction: decoded keys keep their norm (centroid vectors divided by their own norm)" }),
  boundary: integer({ min: 0, max: 1024, default: 0, doc: "the model's first and last N layers kept fp16 (vLLM keeps 2)" }),
};

/** The codec for layers [0, ctx.config.numLayers) of ctx, every one quantized. */
function quantized(p: Infer<typeof PARAMS>, ctx: CodecContext): TurboQuantCodec {
  const c = ctx.config;
  const d = c.headDim;
  const kbits = p.kbits ?? p.bits;
  const vbits = p.vbits ?? p.bits;
  const store = (cfg: StreamConfig, lut: number[]): QuantStore => new QuantStore(ctx.kernels, c.numLayers, c.numKvHeads, d, cfg, ctx.capacity, lut);
  const perToken = { axis: 'token', group: d, ocap: 0, ringSize: 0, sinks: 0, rope: false } as const;
  const centroids = kbits === 8 ? [] : turboCentroids(kbits, d);
  const keys = kbits === 8
    ? store({ ...perToken, dt: { bits: 8, kind: 'int', levels: [] } }, intLut(8))
    : store({ ...perToken, dt: { bits: kbits, kind: 'unit', levels: centroids } }, centroids);
  const values = store({ ...perToken, dt: { bits: vbits, kind: 'int', levels: [] } }, intLut(vbits));
  return new TurboQuantCodec(ctx, keys, values, kbits === 8 ? 0 : hadamardBlock(d, d), { kbits, centroids, nc: p.nc });
}

export const turboquant = codecKind({
  schema: {
    name: 'turboquant',
    doc: 'TurboQuant (vLLM form): Hadamard-rotated keys as Lloyd-Max centroid codes with a per-token norm, values per-token min-max integers',
    paper: 'Zandieh et al., TurboQuant: Online Vector Quantization with Near-optimal Distortion Rate, 2025 (arXiv:2504.19874)',
    params: PARAMS,
  },
  create: (p, ctx): Codec => {
    const c = ctx.config;
    if (c.headDim < 4) throw new UsageError(`turboquant needs heads of 4 or more numbers, not ${c.headDim}`);
    const first = ctx.firstLayer ?? 0;
    const total = ctx.modelLayers ?? first + c.numLayers;
    if (2 * p.boundary >= total) {
      throw new UsageError(`turboquant(boundary=${p.boundary}) keeps the first and last ${p.boundary} of the model's ${total} layers fp16, leaving none quantized; use boundary below ${Math.ceil(total / 2)}`);
    }
    if (p.boundary === 0) return quantized(p, ctx);
    // runs of consecutive layers, boundary (fp16) or not, each its own codec
    const isBoundary = (l: number): boolean => first + l < p.boundary || first + l >= total - p.boundary;
    const runs: { kernels: Kernels; from: number; to: number; fp16: boolean }[] = [];
    for (let l = 0; l < c.numLayers; l++) {
      const last = runs[runs.length - 1];
      if (last && last.fp16 === isBoundary(l)) last.to = l + 1;
      else runs.push({ kernels: ctx.kernels, from: l, to: l + 1, fp16: isBoundary(l) });
    }
    const part = (r: (typeof runs)[number]): Codec => {
      const sub = { ...ctx, config: { ...c, numLayers: r.to - r.from }, firstLayer: first + r.from, modelLayers: total };
      return r.fp16 ? fp16.create({}, sub) : quantized(p, sub);
    };
    return runs.length === 1 ? part(runs[0]!) : new GroupedCodec(new LayerGroups(runs), runs.map(part));
  },
});
