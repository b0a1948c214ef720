import { createKernels } from '../kernels/index.js';
import { median } from './table.js';

const measured = new Map<number, Promise<number>>();

/**
 * The read bandwidth (bytes/s) the wasm kernels reach at `threads`: the streaming-read kernel
 * (xorWords) over a 256 MiB buffer, far beyond the caches; median of 5 runs after a warm-up.
 * Measured once per thread count per bench run.
 */
export function readBandwidth(threads: number): Promise<number> {
  let m = measured.get(threads);
  if (!m) {
    m = measure(threads, 256 << 20, 5);
    measured.set(threads, m);
  }
  return m;
}

async function measure(threads: number, bytes: number, runs: number): Promise<number> {
  const k = await createKernels({ backend: 'wasm', threads });
  try {
    const p = k.arena.alloc(bytes);
    k.arena.u8(p, bytes).fill(1); // every page touched before timing
    k.xorWords(p, bytes);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      k.xorWords(p, bytes);
      times.push(performance.now() - t0);
    }
    return bytes / (median(times) / 1000);
  } finally {
    await k.close();
  }
}

/** Roofline share: the bytes one decode step must read × steps per second, over the read bandwidth. */
export function rooflineShare(bytesPerStep: number, tokPerS: number | null | undefined, bandwidth: number): number | null {
  return tokPerS ? (bytesPerStep * tokPerS) / bandwidth : null;
}
