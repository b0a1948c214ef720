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
 * How the frequencies are rescaled for contexts past the trained one. Only 'none' for now; the
 * Llama-3, linear and YaRN rules belong in `frequencies` below (YaRN's attention temperature too).
 */
export type RopeScaling = { kind: 'none' };

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

  constructor(c: RopeConfig) {
    this.headDim = c.headDim;
    this.theta = c.ropeTheta;
    this.layout = c.ropeLayout;
    this.scaling = c.ropeScaling ?? { kind: 'none' };
    this.freqs = frequencies(this.theta, this.headDim, this.scaling);
  }

  get interleaved(): boolean {
    return this.layout === 'interleaved';
  }

  /** The angle pair j of a row at `position` turns by. */
  angle(position: number, j: number): number {
    return position * this.freqs[j]!;
  }
}

/** θ_j = theta^(−2j/headDim): the one place the frequency rule lives. */
function frequencies(theta: number, headDim: number, scaling: RopeScaling): Float64Array {
  const f = new Float64Array(headDim >> 1);
  for (let j = 0; j < f.length; j++) f[j] = theta ** ((-2 * j) / headDim);
  switch (scaling.kind) {
    case 'none':
      return f;
  }
}

const ropes = new WeakMap<RopeConfig, Rope>();

/** The Rope of a model config, made once per config object and shared by everything that rotates. */
export function ropeOf(c: RopeConfig): Rope {
  let r = ropes.get(c);
  if (!r) ropes.set(c, (r = new Rope(c)));
  return r;
}
