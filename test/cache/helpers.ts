import type { Policy, SlotView } from '../../src/cache/policy.js';

/** The slots a policy chooses to evict from one KV head, `count` of them. */
export function choose(p: Policy, layer: number, head: number, count: number, view: SlotView): Int32Array {
  const out = new Int32Array(count);
  p.choose(layer, head, count, view, out);
  return out;
}
