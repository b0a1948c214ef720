import type { Kernels } from '../kernels/api.js';
import type { ModelConfig } from '../model/config.js';
import type { MaskingCodec } from './codec.js';
import { KVCache, type CacheParts } from './kvcache.js';
import type { MaskingPolicy } from './policy.js';

/**
 * A KVCache whose policy hides tokens from single queries instead of evicting them (Scissorhands'
 * reference mode): each new query runs once unmasked so the policy sees its probabilities, then
 * again with the policy's mask, and the policy observes that query alone.
 */
export class MaskedKVCache extends KVCache {
  declare readonly policy: MaskingPolicy;
  declare readonly codec: MaskingCodec;
  private mask = 0;
  private maskBytes = 0;
  /** The one memory of every layer: build.ts refuses masks on a model split over several. */
  private readonly k: Kernels;

  constructor(config: ModelConfig, parts: CacheParts & { policy: MaskingPolicy; codec: MaskingCodec }) {
    super(config, parts);
    this.k = parts.groups.first.kernels;
  }

  /** The policy reads every slot's position (its index: the policy never evicts). */
  protected override get readsSlotIndices(): boolean {
    return true;
  }

  protected override attendQueries(layer: number, q: number, out: number, from: number, n: number, slotPositions: number): void {
    const c = this.config;
    const probsLength = c.numHeads * this.capacity;
    const rowBytes = c.numHeads * c.headDim * 4;
    const call = this.call;
    const stats = this.attentionStats;
    for (let i = 0; i < n; i++) {
      call.q = q + i * rowBytes;
      call.out = out + i * rowBytes;
      call.n = 1;
      call.visible = from + 1 + i;
      call.positions = slotPositions;
      call.lastProbs = this.lastProbsOf(layer);
      call.received = 0;
      this.codec.attention(layer, call);
      const probs = this.k.arena.f32(call.lastProbs, probsLength);
      const held = this.k.arena.i32(slotPositions, c.numKvHeads * this.capacity);
      this.codec.maskedAttention(layer, call, this.copyMask(this.policy.maskQuery(layer, probs, from + 1 + i, this.capacity, held)));
      stats.layer = layer;
      stats.n = 1;
      stats.length = from + 1 + i;
      stats.capacity = this.capacity;
      stats.received = EMPTY;
      stats.tail = probs;
      stats.tailRows = 1;
      this.policy.observe(stats);
    }
  }

  /** The mask in kernel memory (0: none). */
  private copyMask(mask: Uint8Array | undefined): number {
    if (!mask) return 0;
    if (this.maskBytes < mask.length) {
      if (this.mask) this.k.arena.free(this.mask);
      this.mask = this.k.arena.alloc(mask.length);
      this.maskBytes = mask.length;
    }
    this.k.arena.u8(this.mask, mask.length).set(mask);
    return this.mask;
  }

  override free(): void {
    if (this.mask) this.k.arena.free(this.mask);
    this.mask = 0;
    super.free();
  }
}

const EMPTY = new Float32Array(0);
