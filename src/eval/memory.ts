import { compressionRatio } from '../cache/kvcache.js';
import type { Session } from '../engine/session.js';

/** What a task's cache held, the same four numbers for every task (a result row nests them). */
export interface CacheMemory {
  /**
   * Most bytes the cache held once compressed (codec storage, positions, policy state): what a
   * compressed prompt and generation keep. Rows written before it was recorded lack it; their
   * kv_bytes_per_token and compression were computed from kv_bytes_peak.
   */
  kv_bytes_held?: number;
  /** Most bytes at once, including the transient step before eviction (a whole prompt before it is compressed). */
  kv_bytes_peak: number;
  /**
   * Bytes held at the end of the longest sequence: the steady state, once kvquant without a
   * calibration file has quantized the f16 rows it staged (the held maximum may be set while staging).
   */
  kv_bytes_end?: number;
  /** The codec's note on these numbers (Codec.note: kvquant's f16 staging, or the stored calibration it used). */
  note?: string;
  /** kv_bytes_held per token of the longest sequence. */
  kv_bytes_per_token: number;
  /** Bytes of the full fp16 cache for the longest sequence over kv_bytes_held (rows of format 1 were against f32; reading converts them). */
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
  private held = 0;
  private longest = 0;
  private end = 0;
  private note: string | undefined;
  private readonly bits: number;

  constructor(private readonly session: Session) {
    this.bits = session.cache.codec.bitsPerValue();
  }

  /** Counts the sequence the session now holds (its length: every token fed, generated ones included). */
  record(): void {
    this.peak = Math.max(this.peak, this.session.cache.peakBytes());
    this.held = Math.max(this.held, this.session.cache.heldBytes());
    if (this.session.tokens.length >= this.longest) {
      this.longest = this.session.tokens.length;
      this.end = this.session.cache.bytes();
      this.note = this.session.cache.note();
    }
  }

  memory(): CacheMemory {
    const { held, peak, longest, end, note } = this;
    return {
      kv_bytes_held: held,
      kv_bytes_peak: peak,
      kv_bytes_end: end,
      ...(note !== undefined && { note }),
      kv_bytes_per_token: held / longest,
      compression: compressionRatio(this.session.model.config, longest, held),
      bits_per_value: this.bits,
    };
  }
}
