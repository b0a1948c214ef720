/**
 * RoPE (rotary position embedding), owned here: its parameters and the one formula for the frequencies
 * every rotation uses — the kernels' `rope` (queries in the forward pass, keys in the float codecs) and
 * the angle tables the quantized attention kernel rotates pre-RoPE keys with (cache/quant/rope.ts).
 * Pair j of a head turns by the angle position·θ_j.
 */

/**
 * How RoPE pairs the dimensions of a head.
 * - `half`: HF "rotate half", dimension i pairs with i + headDim/2.
 * - `interleaved`: GGUF (llama arch) and llama2.c, dimension 2i pairs with 2i+1.
 */
export type RopeLayout = 'half' | 'interleaved';

/**
 * How a model stretches RoPE past the context it was trained on, as Hugging Face transformers defines
 * each kind (modeling_rope_utils) and GGUF stores it (`rope.scaling.*` metadata, the `rope_freqs` tensor).
 * Every kind changes only the per-pair inverse frequencies θ_i = theta^(-2i/d) and, for YaRN, a factor
 * that multiplies cos and sin.
 */
export type RopeScaling =
  | { kind: 'none' }
  /** Position interpolation: every frequency divided by `factor`. */
  | { kind: 'linear'; factor: number }
  /** Llama 3.1: long wavelengths divided by `factor`, short ones kept, a smooth ramp between. */
  | { kind: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositions: number }
  /** YaRN: interpolate low frequencies, extrapolate high ones (ramp between beta_fast and beta_slow rotations), scale attention. */
  | {
      kind: 'yarn';
      factor: number;
      originalMaxPositions: number;
      betaFast: number;
      betaSlow: number;
      /** Multiplies cos and sin; when absent, HF's default from factor, mscale and mscale_all_dim. */
      attentionFactor?: number;
      mscale?: number;
      mscaleAllDim?: number;
      /** Round the ramp's ends to whole dimensions (HF's default). */
      truncate: boolean;
    }
  /** Explicit per-pair divisors (GGUF's `rope_freqs` tensor, how llama.cpp stores Llama 3.1 scaling). */
  | { kind: 'divisors'; divisors: Float32Array };

/** What a model's config says about RoPE (ModelConfig has these fields). */
export interface RopeConfig {
  headDim: number;
  ropeTheta: number;
  ropeLayout: RopeLayout;
  /** Absent: no scaling. */
  ropeScaling?: RopeScaling;
}

export class Rope {
  readonly headDim: number;
  readonly theta: number;
  readonly layout: RopeLayout;
  readonly scaling: RopeScaling;
  /** θ_j for j < headDim/2, in f64. */
  readonly freqs: Float64Array;
  /** What q·k is multiplied by before the softmax: 1/√headDim, times YaRN's cos/sin factor squared. */
  readonly scoreScale: number;

  constructor(c: RopeConfig) {
    this.headDim = c.headDim;
    this.theta = c.ropeTheta;
    this.layout = c.ropeLayout;
    this.scaling = c.ropeScaling ?? { kind: 'none' };
    this.freqs = frequencies(this.theta, this.headDim, this.scaling);
    this.scoreScale = attentionFactor(this.scaling) ** 2 / Math.sqrt(this.headDim);
  }

  get interleaved(): boolean {
    return this.layout === 'interleaved';
  }

  /** The angle pair j of a row at `position` turns by. */
  angle(position: number, j: number): number {
    return position * this.freqs[j]!;
  }

  /**
   * Rotates the head row x[base, base + headDim) in place to `position`, in plain arithmetic (the
   * scalar definition); a negative position applies the inverse rotation.
   */
  rotate(x: { [i: number]: number }, base: number, position: number): void {
    const half = this.headDim / 2;
    for (let i = 0; i < half; i++) {
      const angle = this.angle(position, i);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const a = this.interleaved ? base + 2 * i : base + i;
      const b = this.interleaved ? base + 2 * i + 1 : base + i + half;
      const x0 = x[a]!;
      const x1 = x[b]!;
      x[a] = x0 * c - x1 * s;
      x[b] = x0 * s + x1 * c;
    }
  }
}

/** θ_j = theta^(−2j/dims) for the dims/2 pairs, then the scaling's rule: the one place the frequency rule lives. */
export function frequencies(theta: number, dims: number, s: RopeScaling): Float64Array {
  const half = dims / 2;
  const base = new Float64Array(half);
  for (let i = 0; i < half; i++) base[i] = 1 / theta ** ((2 * i) / dims);
  switch (s.kind) {
    case 'none':
      return base;
    case 'linear':
      return base.map((f) => f / s.factor);
    case 'divisors':
      return base.map((f, i) => f / s.divisors[i]!);
    case 'llama3': {
      const lowWavelen = s.originalMaxPositions / s.lowFreqFactor;
      const highWavelen = s.originalMaxPositions / s.highFreqFactor;
      return base.map((f) => {
        const wavelen = (2 * Math.PI) / f;
        if (wavelen < highWavelen) return f;
        if (wavelen > lowWavelen) return f / s.factor;
        const smooth = (s.originalMaxPositions / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        return (1 - smooth) * (f / s.factor) + smooth * f;
      });
    }
    case 'yarn': {
      // The pair index at which a frequency turns `rotations` times over the original context.
      const correctionDim = (rotations: number) =>
        (dims * Math.log(s.originalMaxPositions / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
      let low = correctionDim(s.betaFast);
      let high = correctionDim(s.betaSlow);
      if (s.truncate) {
        low = Math.floor(low);
        high = Math.ceil(high);
      }
      low = Math.max(low, 0);
      high = Math.min(high, dims - 1);
      if (low === high) high += 0.001;
      return base.map((f, i) => {
        const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
        const extrapolate = 1 - ramp;
        return (f / s.factor) * (1 - extrapolate) + f * extrapolate;
      });
    }
  }
}

/** The factor YaRN multiplies cos and sin by (so attention logits by its square); 1 for the other kinds. */
export function attentionFactor(s: RopeScaling): number {
  if (s.kind !== 'yarn') return 1;
  if (s.attentionFactor !== undefined) return s.attentionFactor;
  const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  if (s.mscale && s.mscaleAllDim) return mscale(s.factor, s.mscale) / mscale(s.factor, s.mscaleAllDim);
  return mscale(s.factor);
}

const ropes = new WeakMap<RopeConfig, Rope>();

/** The Rope of a model config, made once per config object and shared by everything that rotates. */
export function ropeOf(c: RopeConfig): Rope {
  let r = ropes.get(c);
  if (!r) ropes.set(c, (r = new Rope(c)));
  return r;
}
