import type { KVCache } from '../cache/kvcache.js';
import type { Model } from '../model/model.js';

/**
 * How many real bytes a session's cache can reach, worked out before it happens so that the server
 * admits a request only when its worst case fits in the shared budget.
 *
 * `KVCache.bytes()` counts codec storage, 4 bytes of position per slot, and the policy's per-slot
 * state; the codec can say the most it would hold for any lengths, the policy's state per slot is
 * measured once per spec (see `policyBytesPerSlot`).
 */
export function bytesFor(cache: KVCache, lengths: readonly number[], policyBytesPerSlot: number, numKvHeads: number): number {
  const slots = lengths.reduce((a, b) => a + b, 0) * numKvHeads;
  return (cache.codec.maxBytes?.(lengths) ?? cache.codec.bytes(lengths)) + slots * (4 + policyBytesPerSlot);
}

/**
 * The most bytes the cache holds while a prompt of `prompt` tokens is prefilled (all of it is held
 * until the cache compresses at its end) and `decode` more tokens are then fed one at a time (each
 * layer grows by one and is cut back to the policy's target once past its budget). Fractional
 * budgets must already refer to the prompt (`cache.setReference`).
 */
export function peakBytes(cache: KVCache, prompt: number, decode: number, policyBytesPerSlot: number, numKvHeads: number): number {
  const lengths = [...cache.layerLengths()];
  const at = () => bytesFor(cache, lengths, policyBytesPerSlot, numKvHeads);
  let peak = at();
  // codec storage need not grow monotonically (residual rows are packed in groups), so every length is visited
  for (let t = 0; t < prompt; t++) {
    for (let l = 0; l < lengths.length; l++) lengths[l]!++;
    peak = Math.max(peak, at());
  }
  if (prompt > 0) cutToTarget(cache, lengths);
  for (let t = 0; t < decode; t++) {
    for (let l = 0; l < lengths.length; l++) lengths[l]!++;
    peak = Math.max(peak, at());
    cutToTarget(cache, lengths);
  }
  return peak;
}

function cutToTarget(cache: KVCache, lengths: number[]): void {
  for (let l = 0; l < lengths.length; l++) {
    if (lengths[l]! > cache.policy.budget(l)) lengths[l] = Math.min(lengths[l]!, Math.max(1, cache.policy.target(l)));
  }
}

/**
 * Bytes of policy state per cache slot for a spec, measured on two tokens. Building the cache also
 * refuses a spec whose policy and codec do not fit together.
 */
export function policyBytesPerSlot(model: Model, spec: string): number {
  const session = model.session({ cache: spec, chunkSize: 2 });
  try {
    session.feed([0, 0]);
    const slots = session.cache.layerLengths().reduce((a, b) => a + b, 0) * model.config.numKvHeads;
    return session.cache.policy.bytes() / slots;
  } finally {
    session.dispose();
  }
}
