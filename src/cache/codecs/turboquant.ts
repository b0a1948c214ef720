import { UsageError } from '../../errors.js';
import { hadamardBlock, hadamardRows } from '../../kernels/hadamard.js';
import { f16ToF32, f32ToF16 } from '../../kernels/half.js';
import type { Kernels } from '../../kernels/api.js';
import { decodeRow } from '../../kernels/packed/reference.js';
import { clampF16, nearest } from '../../kernels/packed/quantize.js';
import { SEED_RANGE } from '../../util/random.js';
import { bool, int as integer, oneOf, type Infer } from '../../util/schema.js';
import { codecKind, type Codec, type CodecAttention, type CodecContext } from '../codec.js';
import { GroupedCodec, LayerGroups } from '../layer-groups.js';
import { QuantCodec } from '../quant/codec.js';
import { intLut, midpoints, turboCentroids } from '../quant/lut.js';
import { QuantStore, type StreamConfig } from '../quant/store.js';
import { fp16 } from './float.js';
import { QjlSketch } from './turboquant-qjl.js';

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
 * qjl=true (off by default; vLLM leaves it out: "hurts attention quality by amplifying variance through
 *   softmax"): the paper's inner-product variant (Alg. 2): keys at kbits − 1 bits of MSE codes plus
 *   QJL's 1-bit sketch of the residual and its norm (turboquant-qjl.ts), so ⟨q, k̃⟩ is unbiased. The
 *   packed kernel scores LUT codes only, so attention decodes the visible rows in f32 and runs the float
 *   kernel on augmented rows [k_mse, √(π/2)/d·‖r‖·sign(S·r)] against [H·q, S·H·q] (values padded with
 *   zeros): the estimator exactly, no kernel change; `--attention fast` is refused (it would silently
 *   run this exact path). Bytes per token and head: (kbits − 1)·d/8 + 4 for codes and norm, d/8 + 2
 *   for the signs and the residual norm.
 * Differences from vLLM: the prompt's own attention reads the quantized cache (vLLM's first chunk
 * attends to exact keys and values).
 */
class TurboQuantCodec extends QuantCodec {
  private readonly codes: Uint8Array;
  private readonly mids: Float64Array;
  private readonly qjl: QjlSketch | undefined;

  constructor(ctx: CodecContext, keys: QuantStore, values: QuantStore, private readonly keyBlock: number, private readonly o: { kbits: number; centroids: number[]; nc: boolean; qjlSeed?: number }) {
    super(ctx, keys, values, { keys: keyBlock, values: 0 });
    const c = ctx.config;
    this.codes = new Uint8Array(c.headDim);
    this.mids = o.centroids.length ? midpoints(o.centroids) : new Float64Array(0);
    this.qjl = o.qjlSeed === undefined ? undefined : new QjlSketch(c.headDim, c.numKvHeads, c.numLayers, ctx.capacity, o.qjlSeed);
  }

  protected writeRows(layer: number, from: number, n: number, keys: number, values: number): void {
    if (this.o.kbits === 8) this.keys.quantizeRows(layer, keys, n, from);
    else {
      const rows = this.hostRows(keys, n);
      for (let h = 0; h < rows.length; h++) {
        for (let t = 0; t < n; t++) {
          const word = this.encode(rows[h]![t]!);
          this.keys.writeSlot(layer, h, from + t, this.codes, [word]);
          if (this.qjl) this.qjl.write(layer, h, from + t, rows[h]![t]!, this.mseRow(word));
        }
      }
    }
    this.values.quantizeRows(layer, values, n, from);
  }

  /** The MSE part of the key just encoded, as the kernel decodes it (f32 centroid × f16 scale). */
  private mseRow(word: number): Float32Array {
    const scale = f16ToF32(word & 0xffff);
    return Float32Array.from(this.codes, (code) => Math.fround(Math.fround(this.o.centroids[code]!) * scale));
  }

  override resize(capacity: number, keep: number[]): void {
    super.resize(capacity, keep);
    this.qjl?.resize(capacity, keep);
  }

  override move(layer: number, head: number, from: number, to: number): void {
    super.move(layer, head, from, to);
    this.qjl?.move(layer, head, from, to);
  }

  override maskedAttention(layer: number, a: CodecAttention, mask: number): void {
    if (this.qjl) this.qjlAttention(this.qjl, layer, a, mask);
    else super.maskedAttention(layer, a, mask);
  }

  /**
   * QJL's estimator through the float attention kernel: each visible key decoded to [k_mse, g·sign]
   * (2d numbers, g = √(π/2)/d·‖r‖), each query to [H·q, S·H·q], each value to [v, 0], so the kernel's
   * q·k is ⟨H·q, k_mse⟩ + g·⟨S·H·q, sign⟩ = ⟨q, k̃⟩ and its output's first d numbers are attention's.
   */
  private qjlAttention(qjl: QjlSketch, layer: number, a: CodecAttention, mask: number): void {
    const { kernels: k, config: c } = this.ctx;
    const d = c.headDim;
    const w = 2 * d;
    const cap = this.capacity;
    const rows = c.numKvHeads * cap * w;
    // scratch 4–7 (QuantCodec's): augmented keys, values, queries, outputs
    const [keys, values, q, out] = [this.buffer(4, rows), this.buffer(5, rows), this.buffer(6, a.n * c.numHeads * w), this.buffer(7, a.n * c.numHeads * w)];
    const seen = a.visible + a.n - 1;
    const geometry = this.geometry();
    const kd = this.keys.desc(layer);
    const vd = this.values.desc(layer);
    for (let h = 0; h < c.numKvHeads; h++) {
      for (let s = 0; s < seen; s++) {
        const key = decodeRow(k.arena, kd, geometry, h, s, 0);
        const value = decodeRow(k.arena, vd, geometry, h, s, 0);
        const at = (h * cap + s) * w;
        const kf = k.arena.f32(keys, rows);
        kf.set(key, at);
        qjl.signsInto(layer, h, s, kf, at + d);
        const vf = k.arena.f32(values, rows);
        vf.set(value, at);
        vf.fill(0, at + d, at + w);
      }
    }
    const qin = k.arena.f32(a.q, a.n * c.numHeads * d);
    const qf = k.arena.f32(q, a.n * c.numHeads * w);
    const projected = new Float64Array(d);
    for (let r = 0; r < a.n * c.numHeads; r++) {
      const row = qin.slice(r * d, (r + 1) * d);
      hadamardRows(row, this.keyBlock);
      qjl.project(row, projected);
      qf.set(row, r * w);
      qf.set(projected, r * w + d);
    }
    k.attention({
      out, q, n: a.n, keys, values, dtype: 'f32', capacity: cap, visible: a.visible,
      numHeads: c.numHeads, numKvHeads: c.numKvHeads, headDim: w, scale: this.ctx.rope.scoreScale,
      lastProbs: a.lastProbs, received: a.received, mask,
    });
    const of = k.arena.f32(out, a.n * c.numHeads * w);
    const dst = k.arena.f32(a.out, a.n * c.numHeads * d);
    for (let r = 0; r < a.n * c.numHeads; r++) dst.set(of.subarray(r * w, r * w + d), r * d);
  }

  override readRow(layer: number, head: number, slot: number, which: 'key' | 'value'): Float32Array {
    if (!this.qjl || which === 'value') return super.readRow(layer, head, slot, which);
    const row = decodeRow(this.ctx.kernels.arena, this.keys.desc(layer), this.geometry(), head, slot, 0);
    this.qjl.addTo(layer, head, slot, row);
    hadamardRows(row, this.keyBlock);
    return row;
  }

  override bytes(lengths: readonly number[]): number {
    return super.bytes(lengths) + this.sketchBytes(lengths);
  }

  override maxBytes(lengths: readonly number[]): number {
    return super.maxBytes(lengths) + this.sketchBytes(lengths);
  }

  override bitsPerValue(): number {
    if (!this.qjl || this.written.some((n) => n > 0)) return super.bitsPerValue();
    return super.bitsPerValue() + (this.qjl.bytesPerRow * 8) / (2 * this.ctx.config.headDim);
  }

  private sketchBytes(lengths: readonly number[]): number {
    if (!this.qjl) return 0;
    return lengths.reduce((a, b) => a + b, 0) * this.ctx.config.numKvHeads * this.qjl.bytesPerRow;
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
  qjl: bool({ default: false, doc: "the paper's inner-product variant: keys at kbits − 1 bits plus a 1-bit QJL sketch of the residual and its norm (unbiased scores)" }),
  seed: integer({ ...SEED_RANGE, default: 0, doc: "seed of QJL's Gaussian projection" }),
};

/** The codec for layers [0, ctx.config.numLayers) of ctx, every one quantized. */
function quantized(p: Infer<typeof PARAMS>, ctx: CodecContext): TurboQuantCodec {
  const c = ctx.config;
  const d = c.headDim;
  const kbits = p.kbits ?? p.bits;
  const vbits = p.vbits ?? p.bits;
  const store = (cfg: StreamConfig, lut: number[]): QuantStore => new QuantStore(ctx.kernels, c.numLayers, c.numKvHeads, d, cfg, ctx.capacity, lut);
  const perToken = { axis: 'token', group: d, ocap: 0, ringSize: 0, sinks: 0, rope: false } as const;
  // with QJL the MSE stage takes one bit less; the sketch is the last bit
  const mseBits = p.qjl ? kbits - 1 : kbits;
  const centroids = kbits === 8 ? [] : turboCentroids(mseBits, d);
  const keys = kbits === 8
    ? store({ ...perToken, dt: { bits: 8, kind: 'int', levels: [] } }, intLut(8))
    : store({ ...perToken, dt: { bits: mseBits as 2 | 3, kind: 'unit', levels: centroids } }, centroids);
  const values = store({ ...perToken, dt: { bits: vbits, kind: 'int', levels: [] } }, intLut(vbits));
  return new TurboQuantCodec(ctx, keys, values, kbits === 8 ? 0 : hadamardBlock(d, d), { kbits, centroids, nc: p.nc, qjlSeed: p.qjl ? p.seed : undefined });
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
    if (p.qjl) {
      const kbits = p.kbits ?? p.bits;
      if (kbits !== 3 && kbits !== 4) throw new UsageError(`turboquant(qjl=true) keeps keys at kbits − 1 bits plus a 1-bit sketch, so it needs kbits 3 or 4 (not ${kbits}): the packed store has no 1-bit codes and 8-bit keys are integers`);
      if (ctx.attention === 'fast') throw new UsageError("turboquant(qjl=true) scores keys by decoding them in f32 (the packed kernel cannot add QJL's sign-sketch term), so --attention fast would silently run the exact path; use --attention exact");
    }
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
