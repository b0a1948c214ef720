import { f16ToF32, f32ToF16 } from '../../kernels/half.js';
import { clampF16 } from '../../kernels/packed/quantize.js';
import { seededRandom } from '../../util/random.js';

/**
 * QJL, TurboQuant's inner-product stage (Zandieh et al., arXiv 2504.19874, Alg. 2; the 1-bit
 * Johnson–Lindenstrauss sketch of Zandieh et al., arXiv 2406.03482): for a key x with MSE code k_mse,
 * the residual r = x − k_mse is kept as ‖r‖ (f16) and sign(S·r), d bits, with S a seeded d×d matrix
 * of i.i.d. N(0, 1) entries. Decoded, k̃ = k_mse + √(π/2)/d · ‖r‖ · Sᵀ·sign(S·r); since
 * E[s·sign(s·r)] = √(2/π)·r/‖r‖ for a Gaussian row s, E_S[k̃] = x and ⟨q, k̃⟩ is unbiased, with
 * variance at most π/(2d)·‖r‖²·‖q‖². The score needs S·q once per query: ⟨q, k̃⟩ = ⟨q, k_mse⟩ +
 * √(π/2)/d·‖r‖·⟨S·q, sign(S·r)⟩.
 *
 * One sketch per codec: d sign bits (packed 8 to a byte) and an f16 norm per (layer, KV head, slot),
 * moved and resized with the slots.
 */
export class QjlSketch {
  /** S, row-major d × d. */
  private readonly s: Float64Array;
  private readonly rowBytes: number;
  private signs: Uint8Array[];
  private norms: Uint16Array[];
  private readonly r: Float64Array;
  private readonly sr: Float64Array;

  constructor(private readonly d: number, private readonly heads: number, layers: number, private capacity: number, seed: number) {
    this.s = gaussianMatrix(d, seed);
    this.rowBytes = Math.ceil(d / 8);
    this.signs = Array.from({ length: layers }, () => new Uint8Array(heads * capacity * this.rowBytes));
    this.norms = Array.from({ length: layers }, () => new Uint16Array(heads * capacity));
    this.r = new Float64Array(d);
    this.sr = new Float64Array(d);
  }

  /** √(π/2)/d: the estimator's scale. */
  get scale(): number {
    return Math.sqrt(Math.PI / 2) / this.d;
  }

  /** Bytes per stored row: the signs and the f16 norm. */
  get bytesPerRow(): number {
    return this.rowBytes + 2;
  }

  /** Sketches the residual x − mse of one slot. */
  write(layer: number, head: number, slot: number, x: ArrayLike<number>, mse: ArrayLike<number>): void {
    const { d, r, sr } = this;
    let sq = 0;
    for (let i = 0; i < d; i++) sq += (r[i] = x[i]! - mse[i]!) ** 2;
    this.project(r, sr);
    const at = (head * this.capacity + slot) * this.rowBytes;
    const bits = this.signs[layer]!;
    bits.fill(0, at, at + this.rowBytes);
    for (let i = 0; i < d; i++) if (sr[i]! >= 0) bits[at + (i >> 3)]! |= 1 << (i & 7);
    this.norms[layer]![head * this.capacity + slot] = f32ToF16(clampF16(Math.sqrt(sq)));
  }

  /** out = S·v (f64). */
  project(v: ArrayLike<number>, out: Float64Array): void {
    const { d, s } = this;
    for (let i = 0; i < d; i++) {
      let acc = 0;
      for (let j = 0; j < d; j++) acc += s[i * d + j]! * v[j]!;
      out[i] = acc;
    }
  }

  /** Writes the slot's d terms √(π/2)/d·‖r‖·sign_i into out[at, at + d): its half of an augmented key row. */
  signsInto(layer: number, head: number, slot: number, out: Float32Array, at: number): void {
    const from = (head * this.capacity + slot) * this.rowBytes;
    const bits = this.signs[layer]!;
    const g = this.scale * f16ToF32(this.norms[layer]![head * this.capacity + slot]!);
    for (let i = 0; i < this.d; i++) out[at + i] = (bits[from + (i >> 3)]! >> (i & 7)) & 1 ? g : -g;
  }

  /** Adds the slot's correction √(π/2)/d·‖r‖·Sᵀ·sign to row (decoding, for readRow). */
  addTo(layer: number, head: number, slot: number, row: Float32Array): void {
    const { d, s } = this;
    const at = (head * this.capacity + slot) * this.rowBytes;
    const bits = this.signs[layer]!;
    const g = this.scale * f16ToF32(this.norms[layer]![head * this.capacity + slot]!);
    for (let j = 0; j < d; j++) {
      let acc = 0;
      for (let i = 0; i < d; i++) acc += (bits[at + (i >> 3)]! >> (i & 7)) & 1 ? s[i * d + j]! : -s[i * d + j]!;
      row[j] = row[j]! + g * acc;
    }
  }

  move(layer: number, head: number, from: number, to: number): void {
    const b = this.rowBytes;
    this.signs[layer]!.copyWithin((head * this.capacity + to) * b, (head * this.capacity + from) * b, (head * this.capacity + from + 1) * b);
    this.norms[layer]![head * this.capacity + to] = this.norms[layer]![head * this.capacity + from]!;
  }

  resize(capacity: number, keep: number[]): void {
    const b = this.rowBytes;
    this.signs = this.signs.map((old, l) => {
      const next = new Uint8Array(this.heads * capacity * b);
      const n = Math.min(keep[l]!, capacity);
      for (let h = 0; h < this.heads; h++) next.set(old.subarray(h * this.capacity * b, (h * this.capacity + n) * b), h * capacity * b);
      return next;
    });
    this.norms = this.norms.map((old, l) => {
      const next = new Uint16Array(this.heads * capacity);
      const n = Math.min(keep[l]!, capacity);
      for (let h = 0; h < this.heads; h++) next.set(old.subarray(h * this.capacity, h * this.capacity + n), h * capacity);
      return next;
    });
    this.capacity = capacity;
  }
}

/** A d × d matrix of i.i.d. N(0, 1) numbers (Box–Muller over a seeded generator), row-major. */
function gaussianMatrix(d: number, seed: number): Float64Array {
  const next = seededRandom(seed);
  const m = new Float64Array(d * d);
  for (let i = 0; i < m.length; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(1 - next()));
    const angle = 2 * Math.PI * next();
    m[i] = radius * Math.cos(angle);
    if (i + 1 < m.length) m[i + 1] = radius * Math.sin(angle);
  }
  return m;
}
