/**
 * Something watching a cache from outside (the trace recorder). KVCache calls it only while one is
 * attached; without one the cache does no extra work.
 */
export interface CacheObserver {
  /**
   * n tokens were just stored at slots [from, from+n) of a layer. keys (before RoPE) and values are
   * copies of what the codec was given, [n × numKvHeads × headDim]; positions [n].
   */
  written(layer: number, from: number, n: number, keys: Float32Array, values: Float32Array, positions: Int32Array): void;
  /** A compress() finished: what each head holds now is the state after this step. */
  compressed(): void;
}
