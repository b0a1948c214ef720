import { fullCacheBytes } from '../cache/kvcache.js';
import type { Session } from '../session.js';

/** What a task's cache held, the same four numbers for every task (a result row nests them). */
export interface CacheMemory {
  /** Most bytes the cache held at once (codec storage, positions, policy state). */
  kv_bytes_peak: number;
  /** kv_bytes_peak per token of the longest sequence. */
  kv_bytes_per_token: number;
  /** Bytes of the full f32 cache for the longest sequence over kv_bytes_peak. */
  compression: number;
  /** Stored bits per key/value number of the codec. */
  bits_per_value: number;
}

/**
 * Measures a session's cache over the sequences a task runs on it: call `record()` after each
 * sequence (before the session is reset, which clears the cache's peak), then `memory()`.
 */
export class CacheMeter {
  private peak = 0;
  private longest = 0;
  private readonly bits: number;

  constructor(private readonly session: Session) {
    this.bits = session.cache.codec.bitsPerValue();
  }

  /** Counts the sequence the session now holds (its length: every token fed, generated ones included). */
  record(): void {
    this.peak = Math.max(this.peak, this.session.cache.peakBytes());
    this.longest = Math.max(this.longest, this.session.tokens.length);
  }

  memory(): CacheMemory {
    const { peak, longest } = this;
    return {
      kv_bytes_peak: peak,
      kv_bytes_per_token: peak / longest,
      compression: fullCacheBytes(this.session.model.config, longest) / peak,
      bits_per_value: this.bits,
    };
  }
}
