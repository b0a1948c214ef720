/** Seeds are 32-bit: a larger one would be cut to its low bits, so it is refused rather than aliased. */
export const SEED_RANGE = { min: 0, max: 2 ** 32 - 1 } as const;

/** mulberry32: a tiny, well-distributed 32-bit generator; the same seed gives the same stream everywhere. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
