import type { CacheObserver } from '../cache/observer.js';
import type { Session } from '../engine/session.js';
import { UsageError } from '../errors.js';
import { ropeOf } from '../kernels/rope.js';
import { compactNumber, gapEncode, type HeadDelta } from './format.js';

/** Where a recorder sends each step; false asks it to stop (the writer's byte bound is reached). */
export type StepSink = (heads: HeadDelta[], tokens: number) => boolean;

/** The largest relative error of rounding to f16 (half an ulp): a row within it is held at f16 or better. */
const F16_ROUNDING = 2 ** -11;

/** A token's rows as written (the key rotated at its position), kept while its stored form may change. */
interface Original {
  key: Float32Array;
  value: Float32Array;
}

/**
 * Watches a session's cache and turns each compression into one step: per (layer, KV head) the
 * positions added and dropped since the last step, each held token's policy score, and the key/value
 * error of the stored rows (relative L2 of the codec's decoded row against the row it was given,
 * keys compared after RoPE at their position).
 *
 * Errors are measured when a token is written. A codec that packs fewer than 16 bits per number may
 * first hold a token at f16 (KVQuant before calibration, int's residual ring and channel groups) and
 * pack it later; so a token whose key or value error is within f16 rounding is measured again after
 * every step until both are packed or it is dropped, and new errors are reported at the step they changed.
 * Detaches itself when the sink says stop.
 */
export class TraceRecorder implements CacheObserver {
  private readonly previous: Int32Array[];
  /** Per head: errors to report at this step, by position. */
  private readonly pending: Map<number, [number, number]>[];
  /** Per head: tokens held at f16 by a packing codec, with their original rows and last reported errors. */
  private readonly staged: Map<number, Original & { reported: [number, number] }>[];
  private readonly withErrors: boolean;
  private readonly packs: boolean;
  private readonly rotated: number;
  private readonly position: number;

  constructor(private readonly session: Session, private readonly sink: StepSink) {
    const { cache, model } = session;
    if (cache.streaming) throw new UsageError('a trace records positions, which a streaming cache re-indexes; trace without --streaming');
    if (cache.observer) throw new UsageError('this session is already being traced');
    const heads = model.config.numLayers * model.config.numKvHeads;
    this.previous = Array.from({ length: heads }, () => new Int32Array(0));
    this.pending = Array.from({ length: heads }, () => new Map());
    this.staged = Array.from({ length: heads }, () => new Map());
    const bits = cache.codec.bitsPerValue(); // before any write: the codec's packed width
    this.withErrors = bits < 32;
    this.packs = bits < 16;
    this.rotated = model.kernels.arena.alloc(model.config.headDim * 4);
    this.position = model.kernels.arena.alloc(4);
    cache.observer = this;
  }

  /** What the policy's scores mean (undefined when it keeps none). */
  get scoreName(): string | undefined {
    return this.session.cache.policy.heldScores ? this.session.cache.policy.scoreName : undefined;
  }

  get errors(): boolean {
    return this.withErrors;
  }

  written(layer: number, from: number, n: number, keys: Float32Array, values: Float32Array, positions: Int32Array): void {
    if (!this.withErrors) return;
    const { numKvHeads, headDim } = this.session.model.config;
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < numKvHeads; h++) {
        const at = (t * numKvHeads + h) * headDim;
        const original = { key: this.rope(keys.subarray(at, at + headDim), positions[t]!), value: values.slice(at, at + headDim) };
        const errors = this.measure(layer, h, from + t, original);
        const index = layer * numKvHeads + h;
        this.pending[index]!.set(positions[t]!, errors);
        if (this.packs && Math.min(...errors) <= F16_ROUNDING) this.staged[index]!.set(positions[t]!, { ...original, reported: errors });
        else this.staged[index]!.delete(positions[t]!);
      }
    }
  }

  compressed(): void {
    const { numLayers, numKvHeads } = this.session.model.config;
    const heads: HeadDelta[] = [];
    for (let l = 0; l < numLayers; l++) {
      for (let h = 0; h < numKvHeads; h++) heads.push(this.headStep(l, h, l * numKvHeads + h));
    }
    if (!this.sink(heads, this.session.tokens.length)) this.detach();
  }

  /** Stops recording; the cache goes back to doing no extra work. */
  detach(): void {
    const { cache, model } = this.session;
    if (cache.observer !== this) return;
    cache.observer = undefined;
    model.kernels.arena.free(this.rotated);
    model.kernels.arena.free(this.position);
  }

  private headStep(layer: number, head: number, index: number): HeadDelta {
    const policy = this.session.cache.policy;
    const slots = this.session.cache.heldPositions(layer, head);
    const order = slots.map((_, s) => s).sort((a, b) => slots[a]! - slots[b]!);
    const held = Int32Array.from(order, (s) => slots[s]!);
    const [added, dropped] = difference(this.previous[index]!, held);
    this.previous[index] = held;
    const step: HeadDelta = {};
    if (added.length) step.a = gapEncode(added);
    if (dropped.length) step.d = gapEncode(dropped);
    if (policy.heldScores) {
      const scores = policy.heldScores(layer, head, slots.length);
      step.s = order.map((s) => compactNumber(scores[s]!));
    }
    if (this.withErrors) this.remeasureStaged(layer, head, index, slots);
    const pending = this.pending[index]!;
    const live = pending.size ? new Set(held) : undefined;
    const reported = [...pending.keys()].filter((p) => live!.has(p)).sort((a, b) => a - b);
    if (reported.length) {
      step.e = gapEncode(reported);
      step.ke = reported.map((p) => compactNumber(pending.get(p)![0]));
      step.ve = reported.map((p) => compactNumber(pending.get(p)![1]));
    }
    pending.clear();
    return step;
  }

  /** Measures the staged tokens of a head again; a changed error is reported, a packed token leaves the stage. */
  private remeasureStaged(layer: number, head: number, index: number, slots: number[]): void {
    const staged = this.staged[index]!;
    if (staged.size === 0) return;
    const still = new Set<number>();
    slots.forEach((position, slot) => {
      const token = staged.get(position);
      if (!token) return;
      still.add(position);
      const errors = this.measure(layer, head, slot, token);
      if (errors.some((e, i) => compactNumber(e) !== compactNumber(token.reported[i]!))) {
        this.pending[index]!.set(position, errors);
        token.reported = errors;
      }
      if (Math.min(...errors) > F16_ROUNDING) still.delete(position);
    });
    for (const position of staged.keys()) if (!still.has(position)) staged.delete(position);
  }

  /** Relative key and value error of a slot's stored rows. */
  private measure(layer: number, head: number, slot: number, original: Original): [number, number] {
    const codec = this.session.cache.codec;
    return [relativeError(codec.readRow(layer, head, slot, 'key'), original.key), relativeError(codec.readRow(layer, head, slot, 'value'), original.value)];
  }

  /** A key row rotated at `position` by the kernels' RoPE, as codecs that rotate on write store it. */
  private rope(row: Float32Array, position: number): Float32Array {
    const { kernels: k, config: c } = this.session.model;
    k.arena.f32(this.rotated, c.headDim).set(row);
    k.arena.i32(this.position, 1)[0] = position;
    k.rope(this.rotated, 1, 1, this.position, ropeOf(c));
    return k.arena.f32(this.rotated, c.headDim).slice();
  }
}

/** Positions in `next` but not `prev`, and in `prev` but not `next` (both ascending). */
function difference(prev: Int32Array, next: Int32Array): [number[], number[]] {
  const added: number[] = [];
  const dropped: number[] = [];
  let i = 0;
  let j = 0;
  while (i < prev.length || j < next.length) {
    if (j >= next.length || (i < prev.length && prev[i]! < next[j]!)) dropped.push(prev[i++]!);
    else if (i >= prev.length || next[j]! < prev[i]!) added.push(next[j++]!);
    else {
      i++;
      j++;
    }
  }
  return [added, dropped];
}

/** ‖stored − original‖ / ‖original‖ (0 for a zero row stored exactly). */
function relativeError(stored: Float32Array, original: Float32Array): number {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < original.length; i++) {
    diff += (stored[i]! - original[i]!) ** 2;
    norm += original[i]! ** 2;
  }
  return norm > 0 ? Math.sqrt(diff / norm) : Math.sqrt(diff);
}
