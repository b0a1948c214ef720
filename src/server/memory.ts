import type { KVCache } from '../cache/kvcache.js';
import type { Model } from '../model.js';

/**
 * The most bytes the cache holds while a prompt of `prompt` tokens is prefilled (all of it is held
 * until the cache compresses at its end) and `decode` more tokens are then fed one at a time (each
 * layer grows by one and is cut back to the policy's target once past its budget). Fractional
 * budgets must already refer to the prompt (`cache.setPromptLength`).
 */
export function peakBytes(cache: KVCache, prompt: number, decode: number, policyBytesPerSlot: number): number {
  const lengths = [...cache.layerLengths()];
  const at = () => cache.maxBytes(lengths, policyBytesPerSlot);
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
    const slots = session.cache.layerLengths().reduce((a: number, b: number) => a + b, 0) * model.config.numKvHeads;
    return session.cache.policy.bytes(session.cache.layerLengths()) / slots;
  } finally {
    session.dispose();
  }
}
