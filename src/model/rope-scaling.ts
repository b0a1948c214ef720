import { ModelFormatError, UnsupportedModelError } from '../errors.js';
import type { RopeScaling } from '../kernels/rope.js';

// RoPE scaling as config.json and GGUF files write it, read into src/kernels/rope.ts's RopeScaling.

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
