import type { CodecKind } from './codec.js';
import { fp16, fp32 } from './codecs/float.js';
import { bf16 } from './codecs/bf16.js';
import { int } from './codecs/int.js';
import { kvquant } from './codecs/kvquant.js';
import { turboquant } from './codecs/turboquant.js';
import type { PolicyKind } from './policy.js';
import { expected } from './policies/expected.js';
import { full } from './policies/full.js';
import { h2o } from './policies/h2o.js';
import { knorm } from './policies/knorm.js';
import { kvzip } from './policies/kvzip.js';
import { qhitter } from './policies/qhitter.js';
import { random } from './policies/random.js';
import { scissorhands } from './policies/scissorhands.js';
import { snapkv } from './policies/snapkv.js';
import { tova } from './policies/tova.js';
import { window } from './policies/window.js';
import { DEFAULT_CODEC, parseCacheSpec, printCacheSpec, withDefaults, type CacheSpec, type SpecPart, type SpecRegistry } from './spec.js';

/** Every policy and codec a spec may name. */
export const POLICIES = new Map<string, PolicyKind>(
  [full, window, h2o, scissorhands, tova, snapkv, random, knorm, qhitter, expected, kvzip].map((k) => [k.schema.name, k]),
);
export const CODECS = new Map<string, CodecKind>([fp32, fp16, bf16, int, kvquant, turboquant].map((k) => [k.schema.name, k]));

export const REGISTRY: SpecRegistry = {
  policies: new Map([...POLICIES].map(([n, k]) => [n, k.schema])),
  codecs: new Map([...CODECS].map(([n, k]) => [n, k.schema])),
  defaultCodec: policyCodec,
};

/** The codec a policy kind names for itself (qhitter stores at its `bits`), parsed. */
function policyCodec(policy: SpecPart): SpecPart | undefined {
  const kind = POLICIES.get(policy.name);
  return kind?.defaultCodec ? parseSpec(kind.defaultCodec(withDefaults(policy, kind.schema))).codec : undefined;
}

export function parseSpec(text: string): CacheSpec {
  return parseCacheSpec(text, REGISTRY);
}

export function printSpec(spec: CacheSpec): string {
  return printCacheSpec(spec, REGISTRY);
}

/** Whether the spec's codec is the one its policy uses anyway (the canonical text leaves it out). */
export function codecIsImplied(spec: CacheSpec): boolean {
  return printSpec(spec) === printSpec({ policy: spec.policy, codec: policyCodec(spec.policy) ?? DEFAULT_CODEC });
}

/**
 * Today's canonical text of a spec printed while a spec without a codec stored fp32 (kvpack 0.1.0's
 * result rows): `full` becomes `full+fp32`, `full+fp16` becomes `full`, qhitter keeps its own codec.
 */
export function specFromFp32Default(text: string): string {
  const fp32Default: SpecRegistry = { ...REGISTRY, defaultCodec: (policy) => policyCodec(policy) ?? { name: 'fp32', params: {} } };
  return printSpec(parseCacheSpec(text, fp32Default));
}
