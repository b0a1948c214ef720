// Attention over float (f32 or f16) slots: the OP_ATTENTION job.

import {
  ARGS, ATT_BLOCK, ATT_CAPACITY, ATT_F16, ATT_HEAD_DIM, ATT_HEAD_GROUP, ATT_KEYS, ATT_LAST_PROBS, ATT_MASK, ATT_N, ATT_NUM_HEADS,
  ATT_NUM_KV_HEADS, ATT_OUT, ATT_PARTIAL, ATT_Q, ATT_QUERY_BLOCK, ATT_SPLITS, ATT_RECEIVED, ATT_SCALE, ATT_SCRATCH, ATT_SCRATCH_STRIDE, ATT_VALUES, ATT_VISIBLE,
} from '../src/kernels/abi';
import { convertF16Fast } from './convert';
import { h2fEven, h2fOdd } from './half';
import { attentionItems } from './items';
import { axpyBlock2, expRow, finishItem, hsum4, prescaleX, rowMax, scoreBlock, scoreBlock2 } from './simd';

const C_ARGS: usize = <usize>ARGS;

const BLOCK: i32 = ATT_BLOCK; // slots per block of converted keys/values

/**
 * Work item = (block of up to `qb` queries, KV head, a group of up to `hg` query heads sharing it). Each
 * block of keys and values is converted once (f16 slots) and reused by every query and head of the item;
 * each query only takes the slots it may see. When `received` is accumulated, an item covers all query
 * blocks of its heads (in order) so no two threads add into the same row.
 * Per-thread scratch: scores [qb·hg][seenPad] | block [BLOCK][d] | acc [qb·hg][d] | inv [qb·hg].
 */
export function attentionJob(ctrl: usize, thread: i32): i32 {
  const a = ctrl + C_ARGS;
  return attentionItems(ctrl, thread, load<i32>(a, ATT_N), load<i32>(a, ATT_NUM_HEADS), load<i32>(a, ATT_NUM_KV_HEADS),
    load<i32>(a, ATT_HEAD_GROUP), load<i32>(a, ATT_QUERY_BLOCK), load<u32>(a, ATT_RECEIVED) != 0, load<i32>(a, ATT_SPLITS),
    load<i32>(a, ATT_VISIBLE), BLOCK, attendItem);
}

/**
 * Attention of queries [t0, t1) for heads [h0, h1) over slots [lo, hi): query t sees slots below
 * min(hi, visible + t). part < 0: whole views, normalised into `out` (and lastProbs/received). part ≥ 0
 * (one query): writes [max, sum, Σ e^(s−max)·v (d)] per head to the partial buffer at item `part`.
 */
function attendItem(a: usize, thread: i32, t0: i32, t1: i32, kvh: i32, h0: i32, h1: i32, lo: i32, hi: i32, part: i32): void {
  const out = <usize>load<u32>(a, ATT_OUT);
  const q = <usize>load<u32>(a, ATT_Q);
  const n = load<i32>(a, ATT_N);
  const keys = <usize>load<u32>(a, ATT_KEYS);
  const values = <usize>load<u32>(a, ATT_VALUES);
  // ATT_F16: 1 keys and values f16, 2 values only (keys f32: rotated pre-RoPE f16 keys), 0 neither
  const f16K = load<i32>(a, ATT_F16) == 1;
  const f16V = load<i32>(a, ATT_F16) != 0;
  const capacity = load<i32>(a, ATT_CAPACITY);
  // slots seen by query t, counted from lo: visible + t (the range's end caps a one-query item)
  const visible = min(load<i32>(a, ATT_VISIBLE), hi) - lo;
  const numHeads = load<i32>(a, ATT_NUM_HEADS);
  const d = load<i32>(a, ATT_HEAD_DIM);
  const scale = load<f32>(a, ATT_SCALE);
  const lastProbs = <usize>load<u32>(a, ATT_LAST_PROBS);
  const received = <usize>load<u32>(a, ATT_RECEIVED);
  const hg = load<i32>(a, ATT_HEAD_GROUP);
  const qb = load<i32>(a, ATT_QUERY_BLOCK);
  const scratch = <usize>load<u32>(a, ATT_SCRATCH) + <usize>thread * <usize>load<u32>(a, ATT_SCRATCH_STRIDE);
  const mask = <usize>load<u32>(a, ATT_MASK);
  const partial = <usize>load<u32>(a, ATT_PARTIAL) + (<usize>max(part, 0) * <usize>hg * <usize>(d + 2) << 2);

  const g = h1 - h0;
  const rows = (t1 - t0) * g; // row r = (t - t0) · g + head j
  const seenAll = visible + t1 - 1; // slots the last query of the block sees
  const sp = (seenAll + 3) & ~3; // row stride of the scores
  const db = <usize>d << 2; // f32 row bytes
  const ebK: usize = f16K ? 2 : 4;
  const ebV: usize = f16V ? 2 : 4;
  const rb = <usize>sp << 2; // score row bytes
  const scores = scratch;
  const blk = scores + (<usize>(qb * hg) * rb);
  const acc = blk + <usize>BLOCK * db;
  const invs = acc + <usize>(qb * hg) * db;
  const kvOff = (<usize>kvh * <usize>capacity + <usize>lo) * <usize>d; // numbers

  // One query over f16 slots with nothing to report per slot (decode): the halves are widened in
  // registers as they are used, by every head of the group (scoreF16Rows, axpyF16Rows), instead of
  // converted into the block first. Queries are prescaled by 2^112 (prescaleX; none may be ≥ 2^16).
  const qs = invs + (<usize>(qb * hg) << 2); // rows·d prescaled queries
  const one = t1 - t0 == 1 && lastProbs == 0 && received == 0 && (d & 7) == 0;
  let fused = f16K && one;
  for (let j = 0; fused && j < g; j++) fused = prescaleX(qs + <usize>j * db, q + (<usize>(t0 * numHeads + h0 + j) * db), d);
  // values widened in registers too: with f16 keys where the keys were (the same decision as before), else whenever one query
  const fusedV = f16K ? fused : f16V && one;
  if (fused) {
    for (let j = 0; j < g; j += 3) scoreF16Rows(qs + <usize>j * db, min(3, g - j), keys + kvOff * ebK, d, seenAll, scores + <usize>j * rb, rb, scale);
  } else {
    // scores: q·k * scale for each query and head of the item
    for (let s0 = 0; s0 < seenAll; s0 += BLOCK) {
      let kp = keys + (kvOff + <usize>s0 * <usize>d) * ebK;
      if (f16K) {
        convertF16Fast(blk, kp, min(BLOCK, seenAll - s0) * d);
        kp = blk;
      }
      // rows (query, head) that see past s0, in pairs sharing each loaded key vector where their slot
      // counts agree (causal: later queries see more)
      for (let r = (max(t0, s0 + 1 - visible) - t0) * g; r < rows; ) {
        const t = t0 + r / g;
        const bs = min(BLOCK, visible + t - s0);
        const qp = q + (<usize>(t * numHeads + h0 + r % g) * db);
        const dst = scores + <usize>r * rb + (<usize>s0 << 2);
        if (r + 1 < rows && min(BLOCK, visible + t0 + (r + 1) / g - s0) == bs) {
          const t2 = t0 + (r + 1) / g;
          scoreBlock2(qp, q + (<usize>(t2 * numHeads + h0 + (r + 1) % g) * db), kp, d, bs, dst, dst + rb, scale);
          r += 2;
        } else {
          scoreBlock(qp, kp, d, bs, dst, scale);
          r++;
        }
      }
    }
  }
  // masked slots (a u8 per head and slot) take no part in the softmax
  if (mask != 0) {
    for (let r = 0; r < rows; r++) {
      const seen = visible + t0 + r / g;
      const row = scores + <usize>r * rb;
      const mp = mask + <usize>(h0 + r % g) * <usize>capacity + <usize>lo;
      for (let s = 0; s < seen; s++) if (load<u8>(mp + <usize>s) != 0) store<f32>(row + (<usize>s << 2), -Infinity);
    }
  }
  // softmax numerators in place
  const pw = f32x4.splat(fusedV ? reinterpret<f32>(0x77800000) : 1); // fused: w·2^112 times half·2^-112 is w·half rounded once
  for (let r = 0; r < rows; r++) {
    const seen = visible + t0 + r / g;
    const row = scores + <usize>r * rb;
    const m = rowMax(row, seen, (seen + 3) & ~3);
    const total = expRow(row, (seen + 3) & ~3, m, pw);
    store<f32>(invs + (<usize>r << 2), total > 0 ? <f32>(1 / total) : 0);
    if (part >= 0) {
      const pr = partial + (<usize>r * <usize>(d + 2) << 2);
      store<f32>(pr, seen > 0 ? m : -Infinity);
      store<f32>(pr, <f32>total, 4);
    }
  }
  // Σ p·v
  memory.fill(acc, 0, <usize>rows * db);
  if (fusedV) {
    for (let s0 = 0; s0 < seenAll; s0 += BLOCK) {
      const vp = values + (kvOff + <usize>s0 * <usize>d) * ebV;
      for (let j = 0; j < g; j += 3) {
        axpyF16Rows(acc + <usize>j * db, scores + <usize>j * rb + (<usize>s0 << 2), rb, min(3, g - j), vp, d, min(BLOCK, seenAll - s0));
      }
    }
    // accumulators back from even/odd lanes to channel order
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < d; i += 8) {
        const o = acc + <usize>r * db + (<usize>i << 2);
        const e = v128.load(o), od = v128.load(o, 16);
        v128.store(o, v128.shuffle<f32>(e, od, 0, 4, 1, 5));
        v128.store(o, v128.shuffle<f32>(e, od, 2, 6, 3, 7), 16);
      }
    }
  } else {
    for (let s0 = 0; s0 < seenAll; s0 += BLOCK) {
      let vp = values + (kvOff + <usize>s0 * <usize>d) * ebV;
      if (f16V) {
        convertF16Fast(blk, vp, min(BLOCK, seenAll - s0) * d);
        vp = blk;
      }
      for (let r = (max(t0, s0 + 1 - visible) - t0) * g; r < rows; ) {
        const bs = min(BLOCK, visible + t0 + r / g - s0);
        const pp = scores + <usize>r * rb + (<usize>s0 << 2);
        const ap = acc + <usize>r * db;
        if (r + 1 < rows && min(BLOCK, visible + t0 + (r + 1) / g - s0) == bs) {
          axpyBlock2(ap, ap + db, pp, pp + rb, vp, d, bs);
          r += 2;
        } else {
          axpyBlock2(ap, 0, pp, 0, vp, d, bs);
          r++;
        }
      }
    }
  }
  finishItem(out, acc, scores, rb, invs, rows, g, t0, h0, visible + t0, numHeads, d, n, part, partial, received, lastProbs, capacity);
}


/**
 * dst_j[s] = scale · (q_j · k_s) for nr ≤ 3 prescaled query rows (prescaleX layout, d apart) over bs f16
 * key rows: 2 slots × nr rows per pass, each 8 halves widened once in registers (h2fEven/h2fOdd, the
 * f32 bits of half·2^-112) for all rows. d is a multiple of 8.
 */
function scoreF16Rows(q: usize, nr: i32, k: usize, d: i32, bs: i32, dst: usize, dstStride: usize, scale: f32): void {
  const db = <usize>d << 2;
  const kb = <usize>d << 1;
  const q1 = q + (nr > 1 ? db : 0), q2 = q + (nr > 2 ? db << 1 : 0);
  const d1 = dst + (nr > 1 ? dstStride : 0), d2 = dst + (nr > 2 ? dstStride << 1 : 0);
  for (let s = 0; s < bs; s += 2) {
    const k0 = k + <usize>s * kb;
    const k1 = s + 1 < bs ? k0 + kb : k0; // odd tail: the last slot twice, one result kept
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, b0 = a0, b1 = a0, b2 = a0;
    for (let i = 0; i < d; i += 8) {
      const o = <usize>i << 1;
      const v = v128.load(k0 + o), w = v128.load(k1 + o);
      const ve = h2fEven(v), vo = h2fOdd(v), we = h2fEven(w), wo = h2fOdd(w);
      const qo = <usize>i << 2;
      let qe = v128.load(q + qo), qd = v128.load(q + qo, 16);
      a0 = f32x4.add(a0, f32x4.add(f32x4.mul(qe, ve), f32x4.mul(qd, vo)));
      b0 = f32x4.add(b0, f32x4.add(f32x4.mul(qe, we), f32x4.mul(qd, wo)));
      if (nr > 1) {
        qe = v128.load(q1 + qo); qd = v128.load(q1 + qo, 16);
        a1 = f32x4.add(a1, f32x4.add(f32x4.mul(qe, ve), f32x4.mul(qd, vo)));
        b1 = f32x4.add(b1, f32x4.add(f32x4.mul(qe, we), f32x4.mul(qd, wo)));
      }
      if (nr > 2) {
        qe = v128.load(q2 + qo); qd = v128.load(q2 + qo, 16);
        a2 = f32x4.add(a2, f32x4.add(f32x4.mul(qe, ve), f32x4.mul(qd, vo)));
        b2 = f32x4.add(b2, f32x4.add(f32x4.mul(qe, we), f32x4.mul(qd, wo)));
      }
    }
    // [row0 s, row0 s+1, row1 s, row1 s+1], [row2 s, row2 s+1, -, -]
    const sc = f32x4.splat(scale);
    const x = f32x4.mul(hsum4(a0, b0, a1, b1), sc);
    const y = f32x4.mul(hsum4(a2, b2, a2, b2), sc);
    // row 0 last: with nr < 3 the unused rows alias it
    const o = <usize>s << 2;
    store<f32>(d2 + o, f32x4.extract_lane(y, 0));
    store<f32>(d1 + o, f32x4.extract_lane(x, 2));
    store<f32>(dst + o, f32x4.extract_lane(x, 0));
    if (s + 1 < bs) {
      store<f32>(d2 + o, f32x4.extract_lane(y, 1), 4);
      store<f32>(d1 + o, f32x4.extract_lane(x, 3), 4);
      store<f32>(dst + o, f32x4.extract_lane(x, 1), 4);
    }
  }
}

/**
 * acc_j += Σ_s w_j[s] · v_s for nr ≤ 3 rows over bs f16 value rows, w_j = w + j·wStride (softmax
 * weights prescaled by 2^112), acc_j = acc + j·d floats kept in even/odd lane order per 8 channels
 * (the caller puts them back): 8 channels × nr rows in registers while the slots stream by, each 8
 * halves widened once. The sums per channel run over the slots in order, as axpyBlock2's do.
 */
function axpyF16Rows(acc: usize, w: usize, wStride: usize, nr: i32, v: usize, d: i32, bs: i32): void {
  const db = <usize>d << 2;
  const kb = <usize>d << 1;
  const acc1 = acc + (nr > 1 ? db : 0), acc2 = acc + (nr > 2 ? db << 1 : 0);
  const w1 = w + (nr > 1 ? wStride : 0), w2 = w + (nr > 2 ? wStride << 1 : 0);
  for (let i = 0; i < d; i += 8) {
    const o = <usize>i << 2;
    let ae = v128.load(acc + o), ao = v128.load(acc + o, 16);
    let be = v128.load(acc1 + o), bo = v128.load(acc1 + o, 16);
    let ce = v128.load(acc2 + o), co = v128.load(acc2 + o, 16);
    for (let s = 0; s < bs; s++) {
      const x = v128.load(v + <usize>s * kb + (<usize>i << 1));
      const xe = h2fEven(x), xo = h2fOdd(x);
      const so = <usize>s << 2;
      const P = v128.load32_splat(w + so);
      ae = f32x4.add(ae, f32x4.mul(P, xe));
      ao = f32x4.add(ao, f32x4.mul(P, xo));
      if (nr > 1) {
        const Q = v128.load32_splat(w1 + so);
        be = f32x4.add(be, f32x4.mul(Q, xe));
        bo = f32x4.add(bo, f32x4.mul(Q, xo));
      }
      if (nr > 2) {
        const R = v128.load32_splat(w2 + so);
        ce = f32x4.add(ce, f32x4.mul(R, xe));
        co = f32x4.add(co, f32x4.mul(R, xo));
      }
    }
    // row 0 last: with nr < 3 the unused rows alias it
    v128.store(acc2 + o, ce);
    v128.store(acc2 + o, co, 16);
    v128.store(acc1 + o, be);
    v128.store(acc1 + o, bo, 16);
    v128.store(acc + o, ae);
    v128.store(acc + o, ao, 16);
  }
}

