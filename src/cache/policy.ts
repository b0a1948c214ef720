import type { Rope } from '../kernels/rope.js';
import type { Infer, Params } from '../util/schema.js';
import type { PartSchema } from './spec.js';

/**
 * What attention told the policy about one layer after a step. Probabilities are per query head;
 * a policy combines the query heads of a KV head by their mean (GQA: one token set per KV head).
 */
export interface AttentionStats {
  layer: number;
  /** Tokens appended this step. */
  n: number;
  /** Live slots per KV head, the new ones included (they are the last n). */
  length: number;
  /** Row stride of the per-head arrays below. */
  capacity: number;
  /** Query heads per KV head. */
  group: number;
  /** [numHeads × capacity]: probability each slot received, summed over the n queries. */
  received: Float32Array;
  /** [tailRows × numHeads × capacity]: probabilities from the last tailRows queries, oldest first. */
  tail: Float32Array;
  tailRows: number;
}

/** The new tokens' keys (before RoPE) and values of one KV head, [n × headDim] each. */
export interface TokenRows {
  keys: Float32Array;
  values: Float32Array;
  headDim: number;
}

/** Per-slot facts a policy may use to choose. */
export interface SlotView {
  /** Token position of each live slot of this KV head. */
  positions: Int32Array;
  length: number;
  /** For kinds with `readsKeys`: a slot's key as the codec stores it, decoded, after RoPE. */
  key?(slot: number): Float32Array;
}

/**
 * Decides which tokens each (layer, KV head) keeps. It scores slots from what attention reports;
 * the cache moves slots (and asks the policy to move its per-slot state alongside) and calls
 * `choose` when a layer holds more than its budget.
 */
export interface Policy {
  /** Whether the policy ever evicts; when not, a slot's position is its index and is not stored. */
  readonly evicts: boolean;
  /** How many query rows of probabilities `observe` needs (0 = none, 1 = the last query). */
  readonly tailQueries: number;
  /** Whether `observe` reads `received`. */
  readonly needsReceived: boolean;
  /** Slots a layer may hold after eviction; Infinity keeps everything. */
  budget(layer: number): number;
  /** Slots a layer is cut down to once it exceeds its budget (amortised drops go below the budget). */
  target(layer: number): number;
  /** Sets the length fractions of the budget refer to (the prompt, or the scored sequence). */
  setPromptLength(tokens: number): void;
  /**
   * Called before slots [from, from+n) are written with new tokens. `rows` (only for kinds with
   * `needsRows`) holds this head's n keys (before RoPE) and values, [n × headDim] each.
   */
  onAppend(layer: number, head: number, from: number, n: number, positions: Int32Array, rows: TokenRows | undefined): void;
  observe(stats: AttentionStats): void;
  /**
   * Optional (Expected Attention): a layer's n new queries, f32 [n × numHeads × headDim] after RoPE at
   * `positions` (a view of kernel memory: read it before returning).
   */
  observeQueries?(layer: number, queries: Float32Array, n: number, positions: Int32Array): void;
  /** Writes to out[0, count) the slot indices (distinct, < view.length) to evict from one KV head. */
  choose(layer: number, head: number, count: number, view: SlotView, out: Int32Array): void;
  /**
   * Whether a layer's KV heads may hold different counts (heads=adakv): the budget is then per head
   * on average, the layer holding numKvHeads × budget, and eviction calls `chooseHeads` instead of `choose`.
   */
  readonly raggedHeads?: boolean;
  /**
   * Chooses `count` slots to evict among all KV heads of a layer together: head h's go to
   * out[h][0, counts[h]) (distinct, < views[h].length); every head keeps at least one slot.
   */
  chooseHeads?(layer: number, count: number, views: readonly SlotView[], out: readonly Int32Array[], counts: Int32Array): void;
  /**
   * Optional (KVzip): scores from a reconstruction pass the session runs before compressing when
   * this says so (`held`: slots over every layer and KV head). After `beginReconstruction` (each
   * layer's slots per KV head, which the scores are for), for each of `reconstructionChunks(held
   * positions)` the session calls `beginChunk`, feeds the chunk's prompt, its `lead` and its
   * `positions` (held tokens again) one at a time after the last position, and drops them from the
   * cache; then `endReconstruction` (the tokens it ran and the milliseconds they took), and it
   * compresses. `reconstructionPrompt` is the first chunk's prompt (no later one runs longer with its lead).
   */
  reconstructionDue?(held: number): boolean;
  readonly reconstructionPrompt?: string;
  reconstructionChunks?(positions: readonly number[]): ReconstructionChunk[];
  beginReconstruction?(counts: readonly (readonly number[])[]): void;
  beginChunk?(chunk: ReconstructionChunk): void;
  endReconstruction?(tokens: number, ms: number): void;
  /** The slot `from` now lives at `to`. */
  move(layer: number, head: number, from: number, to: number): void;
  /** Optional, for inspection (the trace): what `heldScores` gives, e.g. "accumulated attention". */
  readonly scoreName?: string;
  /** Optional, for inspection: the score of each of a head's `length` live slots as the method defines it; changes no state. */
  heldScores?(layer: number, head: number, length: number): ArrayLike<number>;
  /** Optional numbers a run reports about the policy (e.g. the share of tokens a mask kept). */
  stats?(): Record<string, number>;
  /** What the policy's cost depends on that its spec does not say, or what it holds besides per-slot state; shown beside its numbers. */
  note?(): string | undefined;
  /** Bytes of per-slot state held for the slots the cache holds now (`lengths`: per layer, per KV head). */
  bytes(lengths: readonly number[]): number;
  /** The most `bytes(lengths)` can be, whatever has run (default: `bytes`, for state allocated up front). */
  maxBytes?(lengths: readonly number[]): number;
  /** Makes room for `capacity` slots per head, keeping what is held. */
  resize(capacity: number): void;
  reset(): void;
}

/**
 * A policy that hides tokens from single queries instead of evicting them (Scissorhands' released
 * evaluation code). The cache runs each query twice: unmasked, to give `maskQuery` its probabilities
 * over the `seen` slots it can see ([numHeads × capacity]); then with the returned u8 mask
 * [numHeads × capacity] of slots to leave out (undefined: none; the array may be reused by the next
 * call), after which `observe` gets that query alone (n = 1). Only codecs whose kind `masks` can run it.
 */
export interface MaskingPolicy extends Policy {
  maskQuery(layer: number, probs: Float32Array, seen: number, capacity: number, positions: Int32Array): Uint8Array | undefined;
}

export function isMasking(policy: Policy): policy is MaskingPolicy {
  return 'maskQuery' in policy;
}

export interface PolicyShape {
  numLayers: number;
  numKvHeads: number;
  /** Query heads, for state kept per query head (default numKvHeads). */
  numHeads?: number;
  capacity: number;
  /** The model's RoPE (for policies that reason about positions to come; absent in some tests). */
  rope?: Rope;
}

/** A policy kind: its spec schema and how to build one from the parameters it declares. */
export interface PolicyKind<P extends Params = Params> {
  schema: PartSchema<P>;
  create(params: Infer<P>, shape: PolicyShape): Policy;
  /** Whether `onAppend` needs the new tokens' key and value rows (knorm, qhitter). */
  needsRows?: boolean;
  /** Whether `choose` reads stored keys through `SlotView.key` (not while streaming: stored keys are then before RoPE). */
  readsKeys?: boolean;
  /**
   * The codec (spec text, e.g. `int(bits=4,axis=token)`) a cache uses when the spec names none:
   * for a policy whose method stores what it keeps in a format of its own (qhitter).
   */
  defaultCodec?(params: Infer<P>): string;
}

/** Declares a policy kind, its parameters' types inferred from its schema. */
export function policyKind<P extends Params>(kind: PolicyKind<P>): PolicyKind<P> {
  return kind;
}

/** One chunk of a reconstruction pass: its prompt, then held positions fed after it (`lead`, then `positions`, ascending). */
export interface ReconstructionChunk {
  prompt: string;
  lead: readonly number[];
  positions: readonly number[];
}
