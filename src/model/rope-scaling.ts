import { ModelFormatError, UnsupportedModelError } from '../errors.js';

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

/** θ_i for the `dims / 2` rotated pairs, after scaling. */
export function ropeInverseFrequencies(dims: number, theta: number, s: RopeScaling): Float64Array {
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
export function ropeAttentionFactor(s: RopeScaling): number {
  if (s.kind !== 'yarn') return 1;
  if (s.attentionFactor !== undefined) return s.attentionFactor;
  const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  if (s.mscale && s.mscaleAllDim) return mscale(s.factor, s.mscale) / mscale(s.factor, s.mscaleAllDim);
  return mscale(s.factor);
}

/**
 * config.json's `rope_scaling` (null or absent: none). `maxPositions` is max_position_embeddings, YaRN's
 * original context when rope_scaling names none. Kinds other than linear, llama3 and yarn are refused.
 */
export function parseHfRopeScaling(raw: unknown, maxPositions: number, file: string): RopeScaling {
  if (raw === undefined || raw === null) return { kind: 'none' };
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new ModelFormatError(file, `rope_scaling must be an object or null, got ${JSON.stringify(raw)}`);
  const r = raw as Record<string, unknown>;
  const kind = r.rope_type ?? r.type;
  const num = (key: string, fallback?: number): number => {
    const v = r[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new ModelFormatError(file, `rope_scaling.${key} is missing (rope_type ${JSON.stringify(kind)} needs it)`);
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new ModelFormatError(file, `rope_scaling.${key} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const positive = (key: string, fallback?: number): number => {
    const v = num(key, fallback);
    if (!(v > 0)) throw new ModelFormatError(file, `rope_scaling.${key} must be positive, got ${v}`);
    return v;
  };
  switch (kind) {
    case 'default':
      return { kind: 'none' };
    case 'linear':
      return { kind: 'linear', factor: positive('factor') };
    case 'llama3': {
      const s = {
        kind: 'llama3' as const,
        factor: positive('factor'),
        lowFreqFactor: positive('low_freq_factor'),
        highFreqFactor: positive('high_freq_factor'),
        originalMaxPositions: positive('original_max_position_embeddings'),
      };
      if (s.highFreqFactor <= s.lowFreqFactor) {
        throw new ModelFormatError(file, `rope_scaling.high_freq_factor (${s.highFreqFactor}) must exceed low_freq_factor (${s.lowFreqFactor})`);
      }
      return s;
    }
    case 'yarn': {
      const optional = (key: string) => (r[key] === undefined || r[key] === null ? undefined : num(key));
      return {
        kind: 'yarn',
        factor: positive('factor'),
        originalMaxPositions: positive('original_max_position_embeddings', maxPositions),
        betaFast: positive('beta_fast', 32),
        betaSlow: positive('beta_slow', 1),
        attentionFactor: optional('attention_factor'),
        mscale: optional('mscale'),
        mscaleAllDim: optional('mscale_all_dim'),
        truncate: r.truncate !== false,
      };
    }
    default:
      throw new UnsupportedModelError(file, `rope_scaling type ${JSON.stringify(kind)} is not supported (linear, llama3 and yarn are)`);
  }
}

/**
 * GGUF's scaling as llama.cpp reads it: `<arch>.rope.scaling.type` (absent means linear) with `.factor`
 * (or the older `rope.scale_linear`), YaRN's `.original_context_length`, `.yarn_beta_fast`,
 * `.yarn_beta_slow`, `.attn_factor`; and the `rope_freqs` tensor of per-pair divisors, which is how
 * llama.cpp's converter stores Llama 3.1 scaling. `meta` reads a metadata number under the arch prefix.
 */
export function ggufRopeScaling(
  type: string | undefined,
  meta: (key: string) => number | undefined,
  divisors: Float32Array | undefined,
  contextLength: number,
  file: string,
): RopeScaling {
  const kind = type ?? 'linear';
  const factor = meta('rope.scaling.factor') ?? meta('rope.scale_linear') ?? 1;
  if (!(factor > 0)) throw new ModelFormatError(file, `rope.scaling.factor must be positive, got ${factor}`);
  if (kind === 'yarn') {
    if (divisors) throw new UnsupportedModelError(file, 'has both rope_freqs and YaRN scaling; kvpack supports one at a time');
    return {
      kind: 'yarn',
      factor,
      originalMaxPositions: meta('rope.scaling.original_context_length') ?? contextLength,
      betaFast: meta('rope.scaling.yarn_beta_fast') ?? 32,
      betaSlow: meta('rope.scaling.yarn_beta_slow') ?? 1,
      attentionFactor: meta('rope.scaling.attn_factor'),
      truncate: true,
    };
  }
  if (kind !== 'none' && kind !== 'linear') {
    throw new UnsupportedModelError(file, `RoPE scaling ${JSON.stringify(kind)} is not supported (linear, yarn and rope_freqs are)`);
  }
  // llama.cpp divides every frequency by the factor whatever the type says, and by rope_freqs on top.
  if (divisors) return { kind: 'divisors', divisors: divisors.map((d) => d * factor) };
  return factor === 1 ? { kind: 'none' } : { kind: 'linear', factor };
}
