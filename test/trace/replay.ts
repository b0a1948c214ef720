import { gapDecode, type HeadDelta } from '../../src/trace/format.js';

/** Held positions per head at every step, replayed from raw step deltas (independently of src/trace/read.ts). */
export function replay(steps: HeadDelta[][]): number[][][] {
  let held: number[][] = (steps[0] ?? []).map(() => []);
  return steps.map((heads) => {
    held = heads.map((h, i) => {
      const dropped = new Set(gapDecode(h.d));
      return [...held[i]!.filter((p) => !dropped.has(p)), ...gapDecode(h.a)].sort((a, b) => a - b);
    });
    return held;
  });
}
