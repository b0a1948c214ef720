import type { CacheObserver } from '../cache/observer.js';
import type { Session } from '../session.js';
import { UsageError } from '../errors.js';
import { compactNumber, gapEncode, type HeadDelta } from './format.js';

/** Where a recorder sends each step; false asks it to stop (the writer's byte bound is reached). */
export type StepSink = (heads: HeadDelta[], tokens: number) => boolean;

/**
 * Watches a session's cache and turns each compression into one step: per (layer, KV head) the
 * positions added and dropped since the last step, each held token's policy score, and each new
 * token's key/value error as the codec stores it (relative L2 of the decoded row against the row it
 * was given, keys compared after RoPE at their position). Detaches itself when the sink says stop.
 */
export class TraceRecorder implements CacheObserver {
  private readonly previous: Int32Array[];
  /** Per head: errors of tokens written since the last step, by position. */
  private readonly pending: Map<number, [number, number]>[];
  private readonly withErrors: boolean;
  private readonly rotated: number;
  private readonly position: number;

  constructor(private readonly session: Session, private readonly sink: StepSink) {
    const { cache, model } = session;
    if (cache.streaming) throw new UsageError('a trace records positions, which a streaming cache re-indexes; trace without --streaming');
    if (cache.observer) throw new UsageError('this session is already being traced');
    const heads = model.config.numLayers * model.config.numKvHeads;
    this.previous = Array.from({ length: heads }, () => new Int32Array(0));
    this.pending = Array.from({ length: heads }, () => new Map());
    this.withErrors = cache.codec.bitsPerValue() < 32;
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
        const key = this.rope(keys.subarray(at, at + headDim), positions[t]!);
        const codec = this.session.cache.codec;
        const keyError = relativeError(codec.readRow(layer, h, from + t, 'key'), key);
        const valueError = relativeError(codec.readRow(layer, h, from + t, 'value'), values.subarray(at, at + headDim));
        this.pending[layer * numKvHeads + h]!.set(positions[t]!, [keyError, valueError]);
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
    if (this.withErrors && added.length) {
      const pending = this.pending[index]!;
      step.ke = added.map((p) => compactNumber(pending.get(p)?.[0] ?? NaN));
      step.ve = added.map((p) => compactNumber(pending.get(p)?.[1] ?? NaN));
    }
    this.pending[index]!.clear();
    return step;
  }

  /** A key row rotated at `position` by the kernels' RoPE, as codecs that rotate on write store it. */
  private rope(row: Float32Array, position: number): Float32Array {
    const { kernels: k, config: c } = this.session.model;
    k.arena.f32(this.rotated, c.headDim).set(row);
    k.arena.i32(this.position, 1)[0] = position;
    k.rope(this.rotated, 1, 1, c.headDim, this.position, c.ropeTheta, c.ropeLayout);
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
