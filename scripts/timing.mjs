// Timing for the micro-benchmarks in scripts/.

/**
 * Seconds per call of fn: wall clock, and CPU time of the process (all threads; steadier than the wall
 * clock on a loaded machine). Warms up long enough for V8 to tier the wasm up from Liftoff to TurboFan.
 */
export function time(fn, minMs = 300) {
  for (const t0 = performance.now(); performance.now() - t0 < 150; ) fn();
  let reps = 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  let t = t0;
  while (t - t0 < minMs) {
    fn();
    reps++;
    t = performance.now();
  }
  const c = process.cpuUsage(c0);
  return { seconds: (t - t0) / reps / 1000, cpuSeconds: (c.user + c.system) / 1e6 / reps };
}
