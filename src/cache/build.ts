import { ropeOf } from '../kernels/rope.js';
import type { Kernels } from '../kernels/api.js';
import type { ModelConfig } from '../model/config.js';
import type { ModelIdentity } from './quant/calibfile.js';
import { UsageError } from '../errors.js';
import type { Codec, MaskingCodec } from './codec.js';
import { KVCache, type CacheParts } from './kvcache.js';
import { GroupedCodec, type LayerGroup } from './layer-groups.js';
import { MaskedKVCache } from './masked-kvcache.js';
import { isMasking, type Policy } from './policy.js';
import { CODECS, POLICIES, parseSpec, printSpec } from './registry.js';
import { DEFAULT_CODEC, withDefaults, type CacheSpec } from './spec.js';


export interface BuildOptions {
  streaming?: boolean;
  /** The model's layer groups, when it is split over several kernel memories: each keeps its layers' cache. */
  groups?: readonly LayerGroup[];
  /** The model the cache runs for (see CodecContext.model). */
  model?: () => ModelIdentity;
}

/**
 * Turns a spec into a policy and a codec, after checking that they fit: a codec that cannot follow
 * evictions gets a policy that never evicts, a masking policy a codec that masks, streaming a policy
 * with a fixed budget and a codec that rotates keys at read.
 */
export function buildCache(k: Kernels, config: ModelConfig, spec: CacheSpec, capacity: number, options: BuildOptions = {}): CacheParts {
  spec = withPolicyCodec(spec);
  const text = printSpec(spec);
  const streaming = options.streaming === true;
  capacity = Math.max(1, capacity);
  const policyKind = POLICIES.get(spec.policy.name)!;
  const codecKind = CODECS.get(spec.codec.name)!;
  const codecParams = withDefaults(spec.codec, codecKind.schema);
  const policy = policyKind.create(withDefaults(spec.policy, policyKind.schema), { numLayers: config.numLayers, numKvHeads: config.numKvHeads, capacity });
  if (streaming && !policy.evicts) {
    throw new UsageError('streaming needs a cache that holds a fixed budget, e.g. window(sinks=4,recent=1020) or h2o(budget=1024)');
  }
  if (streaming && !codecKind.ropeOnRead) {
    throw new UsageError(`streaming needs a codec that applies RoPE when reading keys; ${spec.codec.name} stores them rotated`);
  }
  const evictionProblem = policy.evicts ? codecKind.evictionProblem?.(codecParams) : undefined;
  if (evictionProblem) throw new UsageError(`cache spec "${text}": ${evictionProblem}`);
  if (isMasking(policy) && !codecKind.masks) {
    throw new UsageError(`cache spec "${text}": attention masks (scissorhands mode=reference) need a float codec (fp32, fp16)`);
  }
  const groups = options.groups && options.groups.length > 1 ? options.groups : undefined;
  if (groups && isMasking(policy)) throw new UsageError(`cache spec "${text}": attention masks cannot follow a model split over several memories`);
  const codecIn = (kernels: Kernels, firstLayer: number, numLayers: number): Codec =>
    codecKind.create(codecParams, { kernels, config: { ...config, numLayers }, capacity, rope: ropeOf(config), ropeOnRead: streaming, model: options.model, firstLayer });
  const codec = groups ? new GroupedCodec(groups, groups.map((g) => codecIn(g.kernels, g.from, g.to - g.from))) : codecIn(k, 0, config.numLayers);
  return { spec: text, policy, codec, needsRows: policyKind.needsRows === true, streaming, capacity, groups };
}

/** Builds a cache for `spec` and the KVCache that runs it. */
export function createCache(k: Kernels, config: ModelConfig, spec: CacheSpec, capacity: number, options: BuildOptions = {}): KVCache {
  const parts = buildCache(k, config, spec, capacity, options);
  const { policy, codec } = parts;
  return isMasking(policy) ? new MaskedKVCache(k, config, { ...parts, policy, codec: codec as MaskingCodec }) : new KVCache(k, config, parts);
}

/** A spec that leaves the codec at fp32 gets the policy's own codec, if its kind names one (qhitter). */
function withPolicyCodec(spec: CacheSpec): CacheSpec {
  const kind = POLICIES.get(spec.policy.name)!;
  const unnamed = spec.codec.name === DEFAULT_CODEC.name && Object.keys(spec.codec.params).length === 0;
  if (!kind.defaultCodec || !unnamed) return spec;
  return { policy: spec.policy, codec: parseSpec(kind.defaultCodec(withDefaults(spec.policy, kind.schema))).codec };
}
