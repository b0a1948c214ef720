import type { Kernels } from '../kernels/api.js';
import type { Rope } from '../kernels/rope.js';
import type { ModelConfig } from '../model/config.js';
import type { ModelIdentity } from '../model/config.js';
import type { Infer, Params } from '../util/schema.js';
import type { PartSchema } from './spec.js';

/** One attention call over a layer's stored tokens (see AttentionArgs for the causal rule). */
export interface CodecAttention {
  /** f32 [n × numHeads × headDim] queries after RoPE; `out` the same shape. */
  q: number;
  out: number;
  n: number;
  /** Slots the first query sees; query i sees visible + i. */
  visible: number;
  /** Int32 [numKvHeads × capacity]: each slot's position (for codecs that apply RoPE on read). */
  positions: number;
  /** If non-zero, f32 [numHeads × capacity]: the last query's probabilities. */
  lastProbs: number;
  /** If non-zero, f32 [numHeads × capacity]: += each query's probabilities. */
  received: number;
}

/**
 * How kept tokens are stored, and attention computed straight from that storage. Slots are
 * per (layer, KV head); the cache decides which slots are live and moves them on eviction.
 */
export interface Codec {
  /** Makes room for `capacity` slots per KV head, keeping slots [0, keep) of every head. */
  resize(capacity: number, keep: number[]): void;
  /**
   * Stores n tokens at slots [from, from+n) of a layer. keys/values: f32 [n × numKvHeads × headDim]
   * in kernel memory, keys before RoPE (the buffer may be overwritten); positions: Int32 [n] pointer.
   */
  write(layer: number, from: number, n: number, keys: number, values: number, positions: number): void;
  /** Copies slot `from` of a head to slot `to`. */
  move(layer: number, head: number, from: number, to: number): void;
  attention(layer: number, a: CodecAttention): void;
  /** Whether `attention` reads `CodecAttention.positions` (keys rotated at read, sink rows by position). */
  readonly readsPositions: boolean;
  /** Decodes one stored row (keys after RoPE); for tests and inspection, not the hot path. */
  readRow(layer: number, head: number, slot: number, which: 'key' | 'value'): Float32Array;
  /** Real bytes held for `lengths[l]` live slots per KV head in layer l. */
  bytes(lengths: readonly number[]): number;
  /**
   * The most `bytes(lengths)` can be in any state of the codec (a sequence's first tokens staged at
   * higher precision, say); absent when bytes depends on the lengths alone. Servers reserve it.
   */
  maxBytes?(lengths: readonly number[]): number;
  /** Stored bits per key/value number, everything counted (e.g. 4.5 for int4 with f16 scale and zero per 64). */
  bitsPerValue(): number;
  /** What the bytes or the quality of this cache depend on that its spec does not say (kvquant's f16 staging); shown beside its numbers. */
  note?(): string | undefined;
  free(): void;
}

/** A codec that can leave slots out of single queries (for a MaskingPolicy). */
export interface MaskingCodec extends Codec {
  /** `attention` for one query (n = 1) with `mask` (u8 [numHeads × capacity], see AttentionArgs.mask). */
  maskedAttention(layer: number, a: CodecAttention, mask: number): void;
}

/**
 * How packed codecs compute attention: 'exact' decodes every number in f32; 'fast' takes integer dot
 * products on levels, queries and softmax weights rounded to 8, 16 and 16 bits (assembly/packed-attention.ts).
 * Float codecs ignore it.
 */
export type AttentionMode = 'exact' | 'fast';
export const ATTENTION_MODES: readonly AttentionMode[] = ['exact', 'fast'];
/** The mode when none is asked for. */
export const DEFAULT_ATTENTION: AttentionMode = 'exact';

export interface CodecContext {
  kernels: Kernels;
  config: ModelConfig;
  capacity: number;
  /** How keys are rotated (the model's Rope); codecs never read RoPE fields of the config. */
  rope: Rope;
  /**
   * Streaming: keys must be stored before RoPE and rotated at read, by the positions that
   * `CodecAttention.positions` gives (the cache re-indexes them as tokens are evicted).
   */
  ropeOnRead: boolean;
  /** The model layer that is this codec's layer 0 (a layer group's codec stores layers from there; default 0). */
  firstLayer?: number;
  /** The model's layer count, where a codec stores only some of its layers (default: firstLayer + config.numLayers). */
  modelLayers?: number;
  /** The model the cache runs for (kvquant checks a calibration file against it); computed when first asked. */
  model?: () => ModelIdentity;
  /**
   * A build that only measures bytes (the memory plan, before the model is loaded): the codec
   * allocates as it would but reads no file its parameters name, and is never written to.
   */
  measureOnly?: boolean;
  /** How packed codecs compute attention (default DEFAULT_ATTENTION). */
  attention?: AttentionMode;
}

export interface CodecKind<P extends Params = Params> {
  schema: PartSchema<P>;
  create(params: Infer<P>, ctx: CodecContext): Codec;
  /** Whether the codec can rotate keys at read (needed for streaming past the trained context). */
  ropeOnRead?: boolean;
  /** Whether its codecs are MaskingCodecs. */
  masks?: boolean;
  /** Why these parameters cannot follow a policy that evicts (undefined: they can). */
  evictionProblem?(params: Infer<P>): string | undefined;
}

/** Declares a codec kind, its parameters' types inferred from its schema. */
export function codecKind<P extends Params>(kind: CodecKind<P>): CodecKind<P> {
  return kind;
}
