import { ropeOf } from '../kernels/rope.js';
import type { Kernels } from '../kernels/api.js';
import type { ModelConfig } from '../model/config.js';
import type { ModelIdentity } from '../model/config.js';
import { UsageError } from '../errors.js';
import { budgetProblem } from './budget.js';
import type { AttentionMode, Codec, MaskingCodec } from './codec.js';
import { KVCache, type CacheParts } from './kvcache.js';
import { GroupedCodec, LayerGroups } from './layer-groups.js';
import { MaskedKVCache } from './masked-kvcache.js';
import { isMasking, type Policy } from './policy.js';
import { CODECS, POLICIES, printSpec } from './registry.js';
import { withDefaults, type CacheSpec } from './spec.js';
import { warnOnce } from '../util/warn.js';


export interface BuildOptions {
  streaming?: boolean;
  /** Tokens one step appends before compressing: with a fixed budget, the slots needed at first are budget + this. */
  stepTokens?: number;
  /** The model the cache runs for (see CodecContext.model). */
  model?: () => ModelIdentity;
  /** Only its bytes are measured (see CodecContext.measureOnly). */
  measureOnly?: boolean;
  /** Allocates `capacity` slots even where the budget needs fewer: what the cache allocates once grown to it. */
  grown?: boolean;
  /** How packed codecs compute attention (see AttentionMode). */
  attention?: AttentionMode;
}

/**
 * Turns a spec into a policy and a codec, after checking that they fit: a codec that cannot follow
 * evictions gets a policy that never evicts, a masking policy a codec that masks, streaming a policy
 * with a fixed budget and a codec that rotates keys at read. `memory`: the kernels holding every
 * layer's cache, or a split model's layer groups (each keeps its layers' cache).
 */
export function buildCache(memory: Kernels | LayerGroups, config: ModelConfig, spec: CacheSpec, capacity: number, options: BuildOptions = {}): CacheParts {
  const groups = memory instanceof LayerGroups ? memory : LayerGroups.one(memory, config.numLayers);
  if (groups.numLayers !== config.numLayers) throw new RangeError(`internal: layer groups hold ${groups.numLayers} of ${config.numLayers} layers`);
  const text = printSpec(spec);
  const streaming = options.streaming === true;
  const policyKind = POLICIES.get(spec.policy.name)!;
  const codecKind = CODECS.get(spec.codec.name)!;
  const codecParams = withDefaults(spec.codec, codecKind.schema);
  const budgetIssue = budgetProblem(spec.policy.params, policyKind.schema.params, config.numLayers, config.maxContext);
  if (budgetIssue) throw new UsageError(`cache spec "${text}": ${budgetIssue}`);
  const policyParams = withDefaults(spec.policy, policyKind.schema);
  const shape = { numLayers: config.numLayers, numKvHeads: config.numKvHeads, numHeads: config.numHeads, capacity: Math.max(1, capacity), rope: ropeOf(config) };
  let policy = policyKind.create(policyParams, shape);
  const slots = startCapacity(policy, config.numLayers, shape.capacity, options.stepTokens);
  if (!options.grown && slots < shape.capacity) {
    shape.capacity = slots;
    policy = policyKind.create(policyParams, shape);
  }
  if (streaming && !policy.evicts) {
    const half = Math.floor(config.maxContext / 2);
    throw new UsageError(`streaming needs a cache that holds a fixed budget, e.g. window(sinks=4,recent=${config.maxContext - 4}) or h2o(budget=${half})`);
  }
  if (streaming && policyKind.readsKeys) throw new UsageError(`cache spec "${text}": ${spec.policy.name} scores keys after RoPE, which a streaming cache does not store`);
  if (streaming && !codecKind.ropeOnRead) {
    throw new UsageError(`streaming needs a codec that applies RoPE when reading keys; ${spec.codec.name} stores them rotated`);
  }
  const evictionProblem = policy.evicts ? codecKind.evictionProblem?.(codecParams) : undefined;
  if (evictionProblem) throw new UsageError(`cache spec "${text}": ${evictionProblem}`);
  if (isMasking(policy) && !codecKind.masks) {
    throw new UsageError(`cache spec "${text}": attention masks (scissorhands mode=reference) need a float codec (fp32, fp16)`);
  }
  const split = groups.count > 1;
  if (split && isMasking(policy)) throw new UsageError(`cache spec "${text}": attention masks cannot follow a model split over several memories`);
  if (policy.raggedHeads && streaming) throw new UsageError(`cache spec "${text}": heads=adakv cannot stream (RoPE positions are re-ranked per layer, not per head)`);
  const codecIn = (kernels: Kernels, firstLayer: number, numLayers: number): Codec =>
    codecKind.create(codecParams, {
      kernels, config: { ...config, numLayers }, capacity: shape.capacity, rope: ropeOf(config), ropeOnRead: streaming, model: options.model, measureOnly: options.measureOnly, firstLayer,
      attention: options.attention,
      modelLayers: config.numLayers,
    });
  const codec = split ? new GroupedCodec(groups, groups.list.map((g) => codecIn(g.kernels, g.from, g.to - g.from))) : codecIn(groups.first.kernels, 0, config.numLayers);
  if (policy.raggedHeads && !('maskedAttention' in codec)) {
    codec.free();
    // the slots past a shorter head's end are left out of its attention by a mask
    throw new UsageError(`cache spec "${text}": heads=adakv needs a codec whose attention takes a mask${split ? ', and a model split over several memories has none' : ''}`);
  }
  warnIfWide(spec.codec.name, codec, config);
  return { spec: text, policy, codec, needsRows: policyKind.needsRows === true, readsKeys: policyKind.readsKeys === true, streaming, capacity: shape.capacity, groups };
}

/**
 * The slots per KV head a cache asked for `capacity` allocates at first: a fixed budget needs fewer
 * than the context; they grow (by doubling) should a prompt need more.
 */
export function startCapacity(policy: Policy, numLayers: number, capacity: number, stepTokens = 1): number {
  const slots = Math.max(...Array.from({ length: numLayers }, (_, l) => policy.budget(l))) + stepTokens;
  return Math.min(Math.max(1, capacity), slots);
}

/** Builds a cache for `spec` and the KVCache that runs it (`memory` as buildCache's). */
export function createCache(memory: Kernels | LayerGroups, config: ModelConfig, spec: CacheSpec, capacity: number, options: BuildOptions = {}): KVCache {
  const parts = buildCache(memory, config, spec, capacity, options);
  const { policy, codec } = parts;
  return isMasking(policy) ? new MaskedKVCache(config, { ...parts, policy, codec: codec as MaskingCodec }) : new KVCache(config, parts);
}

/**
 * Quantized rows are packed in chunks of 64 codes with per-row scales, so on narrow heads (stories260K:
 * head_dim 8) a 4-bit codec can store more than f16 or even f32; say so rather than let it pass as compression.
 */
function warnIfWide(name: string, codec: Codec, config: ModelConfig): void {
  const bits = codec.bitsPerValue();
  if (name === 'fp32' || bits <= 16) return;
  warnOnce(
    `wide-codec-${name}`,
    `${name} stores ${bits.toFixed(1)} bits per value on this model's ${config.headDim}-wide heads (codes are packed 64 to a chunk, with per-row scales), ` +
      'more than fp16 would; use fp16 here, or a model with heads of 64 or more',
  );
}
