import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ModelFormatError, UnsupportedModelError } from '../../src/errors.js';
import { attentionFactor, frequencies, type RopeScaling } from '../../src/kernels/rope.js';
import { ggufRopeScaling, parseHfRopeScaling } from '../../src/model/rope-scaling.js';
import { seededRandom } from '../../src/util/random.js';

const POSITIONS = [0, 1, 2, 5, 17, 63, 100, 257];

/** ggml's RoPE (llama.cpp's parameters: freq_scale, ext_factor, n_ctx_orig, betas, optional divisors) on `x`, pairs (2i, 2i+1). */
function llamaCppRope(x: Float32Array, dims: number, theta: number, p: { freqScale: number; extFactor: number; nCtxOrig: number; betaFast: number; betaSlow: number; divisors?: Float32Array }): Float32Array {
  const n = POSITIONS.length;
  const input = Buffer.concat([
    Buffer.from(Int32Array.of(n).buffer),
    Buffer.from(Int32Array.from(POSITIONS).buffer),
    Buffer.from(x.buffer, x.byteOffset, x.byteLength),
    ...(p.divisors ? [Buffer.from(p.divisors.buffer)] : []),
  ]);
  const args = [dims, 0, p.freqScale, p.extFactor, p.nCtxOrig, p.betaFast, p.betaSlow, theta, p.divisors ? 1 : 0].map(String);
  const r = spawnSync('python3', ['test/kernels/llama-cpp-rope.py', ...args], { input });
  if (r.status !== 0) throw new Error(`llama-cpp-rope.py failed: ${r.stderr.toString()}`);
  return new Float32Array(new Uint8Array(r.stdout).buffer);
}

/** Rotates pairs (2i, 2i+1) by position·θ_i and scales by the attention factor: RoPE's definition. */
function rotate(x: Float32Array, dims: number, theta: number, s: RopeScaling): Float32Array {
  const freqs = frequencies(theta, dims, s);
  const m = attentionFactor(s);
  const out = new Float32Array(x.length);
  POSITIONS.forEach((p, t) => {
    for (let i = 0; i < dims / 2; i++) {
      const a = p * freqs[i]!;
      const x0 = x[t * dims + 2 * i]!;
      const x1 = x[t * dims + 2 * i + 1]!;
      out[t * dims + 2 * i] = m * (x0 * Math.cos(a) - x1 * Math.sin(a));
      out[t * dims + 2 * i + 1] = m * (x0 * Math.sin(a) + x1 * Math.cos(a));
    }
  });
  return out;
}

function randomRows(dims: number): Float32Array {
  const next = seededRandom(7);
  return Float32Array.from({ length: POSITIONS.length * dims }, () => next() * 2 - 1);
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

// ggml accumulates angles in f32 (θ_i by repeated multiplication), so agreement is to ~1e-4 at these positions.
const TOL = 5e-4;

describe('RoPE scaling agrees with llama.cpp (ggml_rope_ext)', () => {
  const none = { freqScale: 1, extFactor: 0, nCtxOrig: 0, betaFast: 32, betaSlow: 1 };
  for (const [dims, theta] of [[64, 10000], [128, 1e6]] as const) {
    it(`none and linear (head_dim ${dims}, theta ${theta})`, () => {
      const x = randomRows(dims);
      expect(maxDiff(rotate(x, dims, theta, { kind: 'none' }), llamaCppRope(x, dims, theta, none))).toBeLessThan(TOL);
      const linear = parseHfRopeScaling({ rope_type: 'linear', factor: 4 }, 2048, 'config.json');
      expect(maxDiff(rotate(x, dims, theta, linear), llamaCppRope(x, dims, theta, { ...none, freqScale: 0.25 }))).toBeLessThan(TOL);
    });
    it(`yarn, including its attention factor (head_dim ${dims}, theta ${theta})`, () => {
      const x = randomRows(dims);
      for (const [factor, orig] of [[4, 256], [8, 32768], [2, 64]] as const) {
        const yarn = parseHfRopeScaling({ rope_type: 'yarn', factor, original_max_position_embeddings: orig }, 2048, 'config.json');
        const ref = llamaCppRope(x, dims, theta, { freqScale: 1 / factor, extFactor: 1, nCtxOrig: orig, betaFast: 32, betaSlow: 1 });
        expect(maxDiff(rotate(x, dims, theta, yarn), ref), `factor ${factor}, original ${orig}`).toBeLessThan(TOL);
      }
    });
    it(`rope_freqs divisors, as llama.cpp applies them (head_dim ${dims})`, () => {
      const x = randomRows(dims);
      const next = seededRandom(3);
      const divisors = Float32Array.from({ length: dims / 2 }, () => 1 + 7 * next());
      const s = ggufRopeScaling(undefined, () => undefined, divisors, 2048, 'm.gguf');
      expect(maxDiff(rotate(x, dims, theta, s), llamaCppRope(x, dims, theta, { ...none, divisors }))).toBeLessThan(TOL);
    });
  }
});

describe('Llama 3.1 frequency rule (HF _compute_llama3_parameters)', () => {
  // Llama-3.1-8B: theta 500000, head_dim 128, factor 8, low_freq_factor 1, high_freq_factor 4, original 8192.
  // By hand: wavelength 2π·500000^(i/64) is below 8192/4 for i ≤ 28 and above 8192/1 for i ≥ 35.
  const s = parseHfRopeScaling(
    { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
    131072,
    'config.json',
  );
  const base = frequencies(500000, 128, { kind: 'none' });
  const scaled = frequencies(500000, 128, s);
  const divisor = Array.from(base, (f, i) => f / scaled[i]!);
  it('keeps short wavelengths, divides long ones by the factor', () => {
    for (let i = 0; i <= 28; i++) expect(divisor[i]).toBe(1);
    for (let i = 35; i < 64; i++) expect(divisor[i]).toBeCloseTo(8, 12);
  });
  it('ramps smoothly between them', () => {
    for (let i = 29; i <= 34; i++) {
      expect(divisor[i]!).toBeGreaterThan(divisor[i - 1]!);
      expect(divisor[i]!).toBeLessThan(8);
    }
  });
  it('has attention factor 1 (only YaRN scales attention)', () => expect(attentionFactor(s)).toBe(1));
});

describe('parsing rope_scaling', () => {
  it('yarn defaults: betas 32/1, original context from max_position_embeddings, attention factor 0.1·ln(factor)+1', () => {
    const s = parseHfRopeScaling({ type: 'yarn', factor: 4 }, 32768, 'config.json');
    expect(s).toMatchObject({ kind: 'yarn', factor: 4, originalMaxPositions: 32768, betaFast: 32, betaSlow: 1, truncate: true });
    expect(attentionFactor(s)).toBeCloseTo(0.1 * Math.log(4) + 1, 12);
    expect(attentionFactor({ ...(s as Extract<RopeScaling, { kind: 'yarn' }>), attentionFactor: 0.5 })).toBe(0.5);
  });
  it('null and default mean none', () => {
    expect(parseHfRopeScaling(null, 2048, 'c')).toEqual({ kind: 'none' });
    expect(parseHfRopeScaling({ rope_type: 'default' }, 2048, 'c')).toEqual({ kind: 'none' });
  });
  it('refuses unknown kinds and bad numbers with a typed error naming the field', () => {
    expect(() => parseHfRopeScaling({ rope_type: 'dynamic', factor: 2 }, 2048, 'config.json')).toThrow(UnsupportedModelError);
    expect(() => parseHfRopeScaling({ rope_type: 'linear' }, 2048, 'config.json')).toThrow(/rope_scaling.factor is missing/);
    expect(() => parseHfRopeScaling({ rope_type: 'linear', factor: -1 }, 2048, 'config.json')).toThrow(ModelFormatError);
    expect(() => parseHfRopeScaling({ rope_type: 'llama3', factor: 8, low_freq_factor: 4, high_freq_factor: 1, original_max_position_embeddings: 8192 }, 2048, 'c'))
      .toThrow(/high_freq_factor/);
    expect(() => ggufRopeScaling('longrope', () => undefined, undefined, 2048, 'm.gguf')).toThrow(UnsupportedModelError);
  });
  it('GGUF: no type with a factor is linear (llama.cpp\'s default); yarn reads its metadata', () => {
    const meta = (m: Record<string, number>) => (k: string) => m[k];
    expect(ggufRopeScaling(undefined, meta({ 'rope.scaling.factor': 2 }), undefined, 2048, 'm')).toEqual({ kind: 'linear', factor: 2 });
    expect(ggufRopeScaling('none', meta({}), undefined, 2048, 'm')).toEqual({ kind: 'none' });
    expect(ggufRopeScaling('yarn', meta({ 'rope.scaling.factor': 4, 'rope.scaling.original_context_length': 4096 }), undefined, 16384, 'm'))
      .toMatchObject({ kind: 'yarn', factor: 4, originalMaxPositions: 4096 });
  });
});
