import { createCache, startCapacity } from '../cache/build.js';
import type { KVCache } from '../cache/kvcache.js';
import { parseSpec } from '../cache/registry.js';
import type { Kernels } from '../kernels/api.js';
import type { Model } from '../engine/model.js';
import { kvCost, scratchKernels } from '../model/plan.js';

/**
 * The most bytes the cache holds while a prompt of `prompt` tokens is prefilled (all of it is held
 * until the cache compresses at its end) and `decode` more tokens are then fed one at a time (each
 * layer grows by one and is cut back to the policy's target once past its budget): a prediction,
 * where `cache.peakBytes()` is what was seen. Fractional budgets must already refer to the prompt
 * (`cache.setPromptLength`). Slot tables grow from `capacity` (default: the cache's).
 */
export function predictedPeakBytes(cache: KVCache, prompt: number, decode: number, capacity?: number): number {
  return predictedPeak(cache, prompt, decode, capacity).bytes;
}

/** The predicted peak bytes and the longest layer reached on the way. */
function predictedPeak(cache: KVCache, prompt: number, decode: number, capacity?: number): { bytes: number; longest: number } {
  const lengths = [...cache.layerLengths()];
  let longest = Math.max(...lengths);
  // KVzip's reconstruction feeds what is held again, after its prompt (at most a token per character),
  // before cutting: held tokens twice over, plus the prompt, bound what it may hold at any step
  const repeat = cache.policy.reconstructionDue ? cache.policy.reconstructionPrompt?.length ?? 0 : -1;
  const at = () => {
    const held = repeat < 0 ? lengths : lengths.map((l) => 2 * l + repeat);
    for (const length of held) longest = Math.max(longest, length);
    return cache.maxBytes(held, capacity);
  };
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
  return { bytes: peak, longest };
}

function cutToTarget(cache: KVCache, lengths: number[]): void {
  for (let l = 0; l < lengths.length; l++) {
    if (lengths[l]! > cache.policy.budget(l)) lengths[l] = Math.min(lengths[l]!, Math.max(1, cache.policy.target(l)));
  }
}

/** What a request's cache may hold (`held`, against the KV budget) and allocate in kernel memory (`allocated`). */
export interface CacheDemand {
  held: number;
  allocated: number;
}

/**
 * What a cache spec costs on a model, worked out once without running it: a one-slot cache built on
 * scratch kernels (its policy and codec answer the byte counts) and the kernel memory a cache
 * allocates per slot of capacity. Building it also refuses a spec whose policy and codec do not fit.
 * Many specs share one scratch memory (each WebAssembly memory reserves gigabytes of address space).
 */
export class SpecCost {
  private readonly cache: KVCache;
  /** Slots per KV head a session's cache starts with. */
  private readonly capacity: number;
  private readonly alloc: { fixed: number; perToken: number };

  constructor(model: Model, spec: string, scratch: Kernels = scratchKernels()) {
    const c = model.config;
    const parsed = parseSpec(spec);
    // as many groups as the model, so the slot tables kept per memory are counted as in a session
    this.cache = createCache(model.weights.groups.placedIn(scratch), c, parsed, 1, { model: () => model.identity() });
    // a session's cache asks for the model's context at first, one row per step (the scheduler's sessions)
    this.capacity = startCapacity(this.cache.policy, c.numLayers, model.context ?? Math.min(c.maxContext, 1024));
    this.alloc = kvCost(c, spec, true);
  }

  /** The most a fresh cache holds and allocates for a prompt of `prompt` tokens and `decode` fed after it. */
  demand(prompt: number, decode: number): CacheDemand {
    this.cache.reset();
    this.cache.setPromptLength(prompt);
    const peak = predictedPeak(this.cache, prompt, decode, this.capacity);
    return { held: peak.bytes, allocated: this.allocated(peak.longest) };
  }

  /** Kernel memory a cache whose longest layer reached `longest` tokens has allocated (capacity grows by doubling). */
  allocated(longest: number): number {
    let capacity = this.capacity;
    while (capacity < longest) capacity *= 2;
    return Math.ceil(this.alloc.fixed + this.alloc.perToken * capacity);
  }

  /** Gives its one-slot cache's blocks back to the scratch memory. */
  free(): void {
    this.cache.free();
  }
}
