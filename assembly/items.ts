// Work items of the two attention jobs (float slots in index.ts, packed codes in quant.ts), taken from
// the control block's atomic counter by every thread.

import { ARGS, CTRL_DONE, CTRL_NEXT } from '../src/kernels/abi';

/** One work item: queries [t0, t1) and heads [h0, h1) of KV head kvh over slots [lo, hi); part ≥ 0:
 *  partial sums of a split decode go to item `part` of the partial buffer. */
export type AttendItem = (a: usize, thread: i32, t0: i32, t1: i32, kvh: i32, h0: i32, h1: i32, lo: i32, hi: i32, part: i32) => void;

/**
 * Runs this thread's share of an attention job and returns its item count. splits > 1 (one query,
 * decode): items are (KV head, head group, range of `block`-aligned slots), merged by the caller
 * (src/kernels/wasm.ts). Otherwise items are (block of qb queries, KV head, head group); with
 * `received` one item takes every block of its heads in order, so no two threads add into one row.
 */
export function attentionItems(ctrl: usize, thread: i32, n: i32, numHeads: i32, numKv: i32, hg: i32, qb: i32, received: bool,
  splits: i32, visible: i32, block: i32, item: AttendItem): i32 {
  const a = ctrl + <usize>ARGS;
  const next = ctrl + (<usize>CTRL_NEXT << 2);
  const done = ctrl + (<usize>CTRL_DONE << 2);
  const group = numHeads / numKv;
  const subs = (group + hg - 1) / hg;
  if (splits > 1) {
    const chunk = ((visible + splits - 1) / splits + block - 1) / block * block;
    const total = numKv * subs * splits;
    for (;;) {
      const it = atomic.add<i32>(next, 1);
      if (it >= total) break;
      const part = it % splits;
      const gi = it / splits;
      const kvh = gi / subs;
      const h0 = kvh * group + (gi % subs) * hg;
      const h1 = min(h0 + hg, (kvh + 1) * group);
      const lo = min(visible, part * chunk);
      item(a, thread, 0, 1, kvh, h0, h1, lo, min(visible, lo + chunk), it);
      atomic.add<i32>(done, 1);
    }
    return total;
  }
  const perT = numKv * subs;
  const blocks = (n + qb - 1) / qb;
  const items = received ? perT : blocks * perT;
  for (;;) {
    const it = atomic.add<i32>(next, 1);
    if (it >= items) break;
    const rem = it % perT;
    const kvh = rem / subs;
    const h0 = kvh * group + (rem % subs) * hg;
    const h1 = min(h0 + hg, (kvh + 1) * group);
    const b0 = received ? 0 : it / perT;
    const b1 = received ? blocks : b0 + 1;
    for (let b = b0; b < b1; b++) {
      const t1 = min(n, (b + 1) * qb);
      item(a, thread, b * qb, t1, kvh, h0, h1, 0, visible + t1 - 1, -1);
    }
    atomic.add<i32>(done, 1);
  }
  return items;
}
