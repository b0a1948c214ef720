import type { Kernels } from '../kernels/api.js';
import { ReferenceKernels } from '../kernels/reference.js';
import { ropeOf } from '../kernels/rope.js';
import { UnsupportedModelError } from '../errors.js';
import { hasQkNorm, type ModelConfig } from '../model/config.js';
import type { LayerWeights, Weights } from '../model/weights.js';
import { kernelLinear, scalarLinear, type LinearOps, type Vec } from './linear.js';

/** Adds `delta` to one number of a layer's keys (before RoPE) or values: what finite differences perturb. */
export interface Perturbation {
  layer: number;
  stream: 'key' | 'value';
  /** Index into [tokens × numKvHeads × headDim]. */
  index: number;
  delta: number;
}

/** One layer's keys and values of a sequence with the loss gradient of each number, [tokens × numKvHeads × headDim]. */
export interface LayerGradients {
  /** k_proj output (keys before RoPE). */
  keys: Vec;
  keyGrads: Vec;
  /** The same keys after RoPE, and their gradients (for quantizing keys after RoPE). */
  rotatedKeys: Vec;
  rotatedKeyGrads: Vec;
  /** v_proj output. */
  values: Vec;
  valueGrads: Vec;
}

/** What one layer's forward computes from its input x (kept for its backward). */
interface LayerState {
  h: Vec; q: Vec; k: Vec; v: Vec; qr: Vec; kr: Vec;
  /** Residual after attention, its norm, the FFN's gate and up projections, and the layer's output. */
  x2: Vec; h2: Vec; gate: Vec; up: Vec; out: Vec;
}

/**
 * One layer's weights as the backward pass uses them: products with its matrices run in the memory of
 * its layer group, and its norm gains and biases are read once from there.
 */
interface PlacedLayer {
  w: LayerWeights;
  linear: LinearOps;
  attnNorm: Float32Array;
  ffnNorm: Float32Array;
  /** q, k and v biases (Qwen2), undefined when absent. */
  biases: (Float32Array | undefined)[];
}

/** Rows of logits computed at once (bounds the logits buffer to this × vocab). */
const HEAD_ROWS = 128;

/**
 * The gradient of the mean causal-LM loss of one sequence with respect to every layer's keys and values,
 * by backpropagation through the Llama forward pass (src/model/forward.ts, full attention, no cache).
 * Memory stays bounded by one sequence: the forward keeps only each layer's input, the backward
 * recomputes a layer's activations from it, attention probabilities are recomputed ATTENTION_BLOCK
 * queries at a time (never a tokens × tokens matrix) and logits are formed HEAD_ROWS rows at a time.
 * Attention runs as matrix products (the SIMD matmul in f32) with causal masking in between.
 * `precision` f64 gives the finite-difference reference; weights are widened from their stored dtype.
 * A model split over several memories (layer groups) runs each layer in its group's memory, the
 * embedding and classifier in the first group's; activations live in JavaScript between layers.
 */
export class LlamaBackprop {
  private readonly vec: (n: number) => Vec;
  /** The first group's memory, which holds the embedding, final norm and classifier. */
  private readonly ref: ReferenceKernels;
  private readonly linear: LinearOps;
  private readonly finalNorm: Float32Array;
  private readonly layers: PlacedLayer[];
  private memo?: { ids: readonly number[]; inputs: Vec[] };

  constructor(private readonly c: ModelConfig, private readonly w: Weights, precision: 'f32' | 'f64' = 'f32') {
    if (hasQkNorm(c)) throw new UnsupportedModelError(c.architecture, 'the calibration backward pass does not cover per-head q/k norms (Qwen3) yet');
    this.vec = precision === 'f64' ? (n) => new Float64Array(n) : (n) => new Float32Array(n);
    const inMemory = (k: Kernels) => {
      const ref = new ReferenceKernels(k.arena);
      const linear = precision === 'f32' && k.backend === 'wasm' ? kernelLinear(k, ref) : scalarLinear(ref, this.vec);
      const vector = (ptr: number, n: number): Float32Array => k.arena.f32(ptr, n).slice();
      return { ref, linear, vector };
    };
    const groups = w.groups.list;
    const memories = groups.map((g) => inMemory(g.kernels));
    const first = memories[0]!;
    [this.ref, this.linear] = [first.ref, first.linear];
    this.finalNorm = first.vector(w.finalNorm, c.hiddenSize);
    this.layers = groups.flatMap((g, i) => {
      const { linear, vector } = memories[i]!;
      return g.layers.map((L): PlacedLayer => ({
        w: L, linear,
        attnNorm: vector(L.attnNorm, c.hiddenSize),
        ffnNorm: vector(L.ffnNorm, c.hiddenSize),
        biases: ([[L.bq, L.wq], [L.bk, L.wk], [L.bv, L.wv]] as const).map(([b, m]) => (b ? vector(b, m.rows) : undefined)),
      }));
    });
    if (this.layers.length !== c.numLayers) throw new RangeError(`internal: layer groups hold ${this.layers.length} of ${c.numLayers} layers`);
  }

  /**
   * Mean next-token loss of ids (forward only), with an optional perturbation of one key or value.
   * The unperturbed layer inputs of the last ids are kept, so repeated calls (finite differences)
   * start at the perturbed layer.
   */
  loss(ids: readonly number[], perturb?: Perturbation): number {
    if (this.memo?.ids !== ids) this.memo = { ids, inputs: [this.embed(ids)] };
    const inputs = this.memo.inputs;
    const from = perturb?.layer ?? this.c.numLayers;
    while (inputs.length <= from) inputs.push(this.layer(inputs.length - 1, inputs.at(-1)!, ids.length).out);
    let x = inputs[from]!;
    for (let l = from; l < this.c.numLayers; l++) x = this.layer(l, x, ids.length, perturb).out;
    return this.head(x, ids, false).loss;
  }

  /** Each layer's keys (before and after RoPE) and values in a forward pass, first layer first. */
  activations(ids: readonly number[], onLayer: (layer: number, keys: Vec, rotatedKeys: Vec, values: Vec) => void): void {
    let x = this.embed(ids);
    for (let l = 0; l < this.c.numLayers; l++) {
      const s = this.layer(l, x, ids.length);
      onLayer(l, s.k, s.kr, s.v);
      x = s.out;
    }
  }

  /** Forward, then backward; `onLayer` receives each layer's gradients, last layer first. Returns the loss. */
  gradients(ids: readonly number[], onLayer: (layer: number, g: LayerGradients) => void): number {
    const T = ids.length;
    const inputs = [this.embed(ids)];
    for (let l = 0; l < this.c.numLayers; l++) inputs.push(this.layer(l, inputs[l]!, T).out);
    const head = this.head(inputs[this.c.numLayers]!, ids, true);
    let dx = head.dx!;
    for (let l = this.c.numLayers - 1; l >= 0; l--) dx = this.layerBackward(l, inputs[l]!, dx, T, onLayer);
    return head.loss;
  }

  private embed(ids: readonly number[]): Vec {
    const d = this.c.hiddenSize;
    const x = this.vec(ids.length * d);
    ids.forEach((id, t) => x.set(this.ref.row(this.w.embed, id), t * d));
    return x;
  }

  private layer(l: number, x: Vec, T: number, perturb?: Perturbation): LayerState {
    const c = this.c;
    const placed = this.layers[l]!;
    const { w: L, linear, attnNorm, ffnNorm } = placed;
    const h = this.rmsnorm(x, attnNorm, T);
    const [q, k, v] = this.projectQkv(placed, h, T);
    if (perturb?.layer === l) (perturb.stream === 'key' ? k : v)[perturb.index]! += perturb.delta;
    const qr = q.slice();
    const kr = k.slice();
    this.rotate(qr, T, c.numHeads, 1);
    this.rotate(kr, T, c.numKvHeads, 1);
    const x2 = add(x, linear.forward(L.wo, this.attend(linear, qr, kr, v, T), T));
    const h2 = this.rmsnorm(x2, ffnNorm, T);
    const gate = linear.forward(L.wGate, h2, T);
    const up = linear.forward(L.wUp, h2, T);
    const m = this.vec(gate.length);
    for (let i = 0; i < m.length; i++) m[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
    const out = add(x2, linear.forward(L.wDown, m, T));
    return { h, q, k, v, qr, kr, x2, h2, gate, up, out };
  }

  private projectQkv({ w: L, linear, biases }: PlacedLayer, h: Vec, T: number): Vec[] {
    const out = [linear.forward(L.wq, h, T), linear.forward(L.wk, h, T), linear.forward(L.wv, h, T)];
    biases.forEach((b, i) => {
      if (!b) return;
      const y = out[i]!;
      for (let j = 0; j < y.length; j++) y[j]! += b[j % b.length]!;
    });
    return out;
  }

  /** Gradient of the loss with respect to the layer's input x, given the gradient dOut at its output. */
  private layerBackward(l: number, x: Vec, dOut: Vec, T: number, onLayer: (layer: number, g: LayerGradients) => void): Vec {
    const c = this.c;
    const { w: L, linear, attnNorm, ffnNorm } = this.layers[l]!;
    const s = this.layer(l, x, T);
    // feed-forward block: out = x2 + W_down·(silu(gate) ⊙ up)
    const dm = linear.backward(L.wDown, dOut, T);
    const dGate = this.vec(dm.length);
    const dUp = this.vec(dm.length);
    for (let i = 0; i < dm.length; i++) {
      const g = s.gate[i]!;
      const sig = 1 / (1 + Math.exp(-g));
      dUp[i] = dm[i]! * g * sig;
      dGate[i] = dm[i]! * s.up[i]! * sig * (1 + g * (1 - sig));
    }
    const dh2 = add(linear.backward(L.wGate, dGate, T), linear.backward(L.wUp, dUp, T));
    const dx2 = add(dOut, this.rmsnormBackward(s.x2, ffnNorm, dh2, T));
    // attention block: x2 = x + W_o·attention(rope(q), rope(k), v)
    const dAtt = linear.backward(L.wo, dx2, T);
    const { dq, dk: dkr, dv } = this.attendBackward(linear, s.qr, s.kr, s.v, dAtt, T);
    const dk = dkr.slice();
    this.rotate(dq, T, c.numHeads, -1);
    this.rotate(dk, T, c.numKvHeads, -1);
    onLayer(l, { keys: s.k, keyGrads: dk, rotatedKeys: s.kr, rotatedKeyGrads: dkr, values: s.v, valueGrads: dv });
    const dh = add(add(linear.backward(L.wq, dq, T), linear.backward(L.wk, dk, T)), linear.backward(L.wv, dv, T));
    return add(dx2, this.rmsnormBackward(x, attnNorm, dh, T));
  }

  /** Final norm, classifier and mean cross-entropy of predicting ids[t+1] from row t; with `grad`, dLoss/dx too. */
  private head(x: Vec, ids: readonly number[], grad: boolean): { loss: number; dx?: Vec } {
    const T = ids.length;
    const d = this.c.hiddenSize;
    const V = this.c.vocabSize;
    const hf = this.rmsnorm(x, this.finalNorm, T);
    const dhf = grad ? this.vec(T * d) : undefined;
    const predicted = T - 1;
    let loss = 0;
    for (let r0 = 0; r0 < predicted; r0 += HEAD_ROWS) {
      const rows = Math.min(HEAD_ROWS, predicted - r0);
      const logits = this.linear.forward(this.w.lmHead, hf.subarray(r0 * d, (r0 + rows) * d), rows);
      for (let r = 0; r < rows; r++) {
        const z = logits.subarray(r * V, (r + 1) * V);
        let max = -Infinity;
        for (let i = 0; i < V; i++) max = Math.max(max, z[i]!);
        let sum = 0;
        for (let i = 0; i < V; i++) sum += Math.exp(z[i]! - max);
        const target = ids[r0 + r + 1]!;
        loss += max + Math.log(sum) - z[target]!;
        if (!dhf) continue;
        // d(mean loss)/dz = (softmax(z) − onehot(target)) / predicted, written over the logits
        for (let i = 0; i < V; i++) z[i] = Math.exp(z[i]! - max) / sum / predicted;
        z[target]! -= 1 / predicted;
      }
      if (dhf) dhf.set(this.linear.backward(this.w.lmHead, logits, rows), r0 * d);
    }
    return { loss: loss / predicted, dx: dhf && this.rmsnormBackward(x, this.finalNorm, dhf, T) };
  }

  private rmsnorm(x: Vec, g: Float32Array, T: number): Vec {
    const d = this.c.hiddenSize;
    const y = this.vec(x.length);
    for (let t = 0; t < T; t++) {
      const r = this.invRms(x, t);
      for (let i = 0; i < d; i++) y[t * d + i] = x[t * d + i]! * r * g[i]!;
    }
    return y;
  }

  /** y = x·r·g with r = 1/sqrt(mean(x²) + eps): dx = r·a − x·r³·(a·x)/d where a = dy ⊙ g. */
  private rmsnormBackward(x: Vec, g: Float32Array, dy: Vec, T: number): Vec {
    const d = this.c.hiddenSize;
    const dx = this.vec(x.length);
    for (let t = 0; t < T; t++) {
      const r = this.invRms(x, t);
      let dot = 0;
      for (let i = 0; i < d; i++) dot += dy[t * d + i]! * g[i]! * x[t * d + i]!;
      const k = (r * r * r * dot) / d;
      for (let i = 0; i < d; i++) dx[t * d + i] = r * dy[t * d + i]! * g[i]! - x[t * d + i]! * k;
    }
    return dx;
  }

  private invRms(x: Vec, t: number): number {
    const d = this.c.hiddenSize;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[t * d + i]! ** 2;
    return 1 / Math.sqrt(ss / d + this.c.rmsEps);
  }

  /** RoPE at positions 0..T-1 in place; direction −1 applies the inverse (transposed) rotation. */
  private rotate(x: Vec, T: number, heads: number, direction: 1 | -1): void {
    const rope = ropeOf(this.c);
    for (let t = 0; t < T; t++) for (let h = 0; h < heads; h++) rope.rotate(x, (t * heads + h) * this.c.headDim, direction * t);
  }

  /** Causal softmax attention with GQA (query head j reads KV head j / group). */
  private attend(linear: LinearOps, qr: Vec, kr: Vec, v: Vec, T: number): Vec {
    const out = this.vec(qr.length);
    const d = this.c.headDim;
    this.eachBlock(linear, qr, kr, v, T, ({ head, t0, t1, p, vh }) => {
      // out rows t0..t1 = P · V[0, t1)
      scatterHead(out, linear.product(p, transpose(vh, t1, d), t1 - t0, d, t1), head, this.c.numHeads, d, t0, t1);
    });
    return out;
  }

  /**
   * Gradients of attention with respect to rotated queries, rotated keys and values, given dOut.
   * With p = softmax(s), s_j = scale·q·k_j: dv_j += p_j·dOut, ds_j = p_j·(dOut·v_j − Σ_i p_i·dOut·v_i).
   */
  private attendBackward(linear: LinearOps, qr: Vec, kr: Vec, v: Vec, dOut: Vec, T: number): { dq: Vec; dk: Vec; dv: Vec } {
    const { numHeads: H, numKvHeads: Hkv, headDim: d } = this.c;
    const scale = ropeOf(this.c).scoreScale;
    const dq = this.vec(qr.length);
    const dk = this.vec(kr.length);
    const dv = this.vec(v.length);
    const P = linear.product;
    this.eachBlock(linear, qr, kr, v, T, ({ head, kvHead, t0, t1, p, qh, kh, vh }) => {
      const B = t1 - t0;
      const dOb = gatherHead(dOut, head, H, d, t0, t1, this.vec);
      const ds = P(dOb, vh, B, t1, d); // dP, then dS in place
      for (let r = 0; r < B; r++) {
        const row = r * t1;
        let mean = 0;
        for (let s = 0; s < t1; s++) mean += p[row + s]! * ds[row + s]!;
        for (let s = 0; s < t1; s++) ds[row + s] = p[row + s]! * (ds[row + s]! - mean) * scale;
      }
      scatterHead(dq, P(ds, transpose(kh, t1, d), B, d, t1), head, H, d, t0, t1);
      const qb = qh.subarray(t0 * d, t1 * d);
      addHead(dk, P(transpose(ds, B, t1), transpose(qb, B, d), t1, d, B), kvHead, Hkv, d, t1);
      addHead(dv, P(transpose(p, B, t1), transpose(dOb, B, d), t1, d, B), kvHead, Hkv, d, t1);
    });
    return { dq, dk, dv };
  }

  /**
   * For every query head and block of ATTENTION_BLOCK queries [t0, t1): the head's queries, keys and values
   * as [tokens × headDim] and the block's probabilities p [(t1 − t0) × t1] over keys [0, t1) (zero past each query).
   */
  private eachBlock(linear: LinearOps, qr: Vec, kr: Vec, v: Vec, T: number, visit: (b: AttentionBlock) => void): void {
    const { numHeads: H, numKvHeads: Hkv, headDim: d } = this.c;
    const scale = ropeOf(this.c).scoreScale;
    for (let kvHead = 0; kvHead < Hkv; kvHead++) {
      const kh = gatherHead(kr, kvHead, Hkv, d, 0, T, this.vec);
      const vh = gatherHead(v, kvHead, Hkv, d, 0, T, this.vec);
      for (let head = kvHead * (H / Hkv); head < (kvHead + 1) * (H / Hkv); head++) {
        const qh = gatherHead(qr, head, H, d, 0, T, this.vec);
        for (let t0 = 0; t0 < T; t0 += ATTENTION_BLOCK) {
          const t1 = Math.min(T, t0 + ATTENTION_BLOCK);
          const p = linear.product(qh.subarray(t0 * d, t1 * d), kh.subarray(0, t1 * d), t1 - t0, t1, d);
          for (let r = 0; r < t1 - t0; r++) {
            const row = p.subarray(r * t1, (r + 1) * t1);
            const seen = t0 + r + 1;
            let max = -Infinity;
            for (let s = 0; s < seen; s++) max = Math.max(max, row[s]! * scale);
            let sum = 0;
            for (let s = 0; s < seen; s++) sum += row[s] = Math.exp(row[s]! * scale - max);
            for (let s = 0; s < seen; s++) row[s]! /= sum;
            row.fill(0, seen);
          }
          visit({ head, kvHead, t0, t1, p, qh, kh, vh });
        }
      }
    }
  }
}

interface AttentionBlock {
  head: number;
  kvHead: number;
  t0: number;
  t1: number;
  p: Vec;
  qh: Vec;
  kh: Vec;
  vh: Vec;
}

/** Query rows per attention block: probabilities are held for a block × tokens at a time. */
const ATTENTION_BLOCK = 256;

/** Head h of rows [t0, t1) of x [tokens × heads × d], as [(t1 − t0) × d]. */
function gatherHead(x: Vec, h: number, heads: number, d: number, t0: number, t1: number, vec: (n: number) => Vec): Vec {
  const out = vec((t1 - t0) * d);
  for (let t = t0; t < t1; t++) out.set(x.subarray((t * heads + h) * d, (t * heads + h + 1) * d), (t - t0) * d);
  return out;
}

function scatterHead(x: Vec, rows: Vec, h: number, heads: number, d: number, t0: number, t1: number): void {
  for (let t = t0; t < t1; t++) x.set(rows.subarray((t - t0) * d, (t - t0 + 1) * d), (t * heads + h) * d);
}

/** x[t, h] += rows[t] for t < t1. */
function addHead(x: Vec, rows: Vec, h: number, heads: number, d: number, t1: number): void {
  for (let t = 0; t < t1; t++) {
    const o = (t * heads + h) * d;
    for (let i = 0; i < d; i++) x[o + i]! += rows[t * d + i]!;
  }
}

/** The first `rows` rows of x [rows × cols] transposed to [cols × rows]. */
function transpose(x: Vec, rows: number, cols: number): Vec {
  const out = new (x.constructor as Float32ArrayConstructor | Float64ArrayConstructor)(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c]!;
  return out;
}

function add(a: Vec, b: Vec): Vec {
  const out = a.slice();
  for (let i = 0; i < out.length; i++) out[i]! += b[i]!;
  return out;
}

