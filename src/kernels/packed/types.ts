import type { AttentionArgs } from '../types.js';
import type { CodeBits } from './pack.js';

/**
 * One packed store (the keys or the values of one layer) as the quantized attention kernel reads it.
 * A stored number is  x = L[code]·S + Z  where L is a ≤16-entry f32 lookup table (L[c] = c for plain
 * integer codes; 8-bit codes are always L[c] = c) and (S, Z) an f16 scale and zero shared by a group:
 *   axis 'token':   S, Z per (slot, `group` consecutive channels); params u32 [head][capacity][ceil(d/group)]
 *   axis 'channel': S, Z per (channel, `group` consecutive slots; group 0 = all slots); params u32
 *                   [head][tokenGroups][d]
 * (each u32: low half f16 scale, high half f16 zero). On top of the dense codes, in this order:
 *   outliers: u32 [head][capacity][ocap], low half an f16 value that replaces channel (high half);
 *             channel 0xFFFF marks an unused entry.
 *   sinks:    f16 [head][sinks][d]: a slot whose position is < sinks reads this row (position-indexed).
 *   ring:     f16 [head][ringSize][d]: a slot s ≥ qlen is not quantized yet and reads row s % ringSize.
 * 16-bit codes are bfloat16 numbers, used as they are (no LUT, scale or zero; params unused).
 * If `rope`, the decoded row is then rotated by its slot's position (keys stored before RoPE).
 */
export interface QuantStream {
  codes: number;
  bits: CodeBits;
  /** f32 [16] lookup table (unused for 8 bits). */
  lut: number;
  axis: 'token' | 'channel';
  group: number;
  params: number;
  /** Bytes per head in `params`. */
  paramsHeadStride: number;
  outliers: number;
  ocap: number;
  ring: number;
  ringSize: number;
  /** Slots from here on are read from the ring (≥ capacity when there is none). */
  qlen: number;
  sinkRows: number;
  sinks: number;
  rope: boolean;
}

/** Causal attention over two packed stores; same causal/GQA rules and outputs as AttentionArgs. */
export interface QuantAttentionArgs extends Omit<AttentionArgs, 'keys' | 'values' | 'dtype'> {
  /** Int32 [numKvHeads × capacity]: slot positions (for RoPE and sinks). */
  positions: number;
  keys: QuantStream;
  values: QuantStream;
  /**
   * RoPE tables for streams with `rope`, f32: lo [64][2][headDim/2] holds cos then sin of (p mod 64)·θ_j,
   * hi [P][2][headDim/2] of (p − p mod 64)·θ_j for p < 64·P; cos/sin of pθ come from the angle sum.
   */
  ropeLo: number;
  ropeHi: number;
  ropeInterleaved: boolean;
  /**
   * The fast path (wasm): integer dot products on queries rounded to 16 bits per head (per-channel key
   * scales folded in) and softmax weights rounded to 16 bits per tile; test/kernels/fast-attention.test.ts
   * defines it in scalar code. The reference kernels always compute exactly.
   */
  fast?: boolean;
}

/** How numbers map to codes: 'int' L[c] = c over [min, max]; 'unit' nearest of sorted levels on [−1, 1]. */
export type QuantKind = 'int' | 'unit';

/**
 * Quantizes rows into a packed store (2, 3, 4 or 8 bits): codes, and on the token axis each group's f16
 * scale/zero word (min-max range); on the channel axis the words already in `params` for the slot's
 * token group are used (values beyond their range clamp). 16 bits: bfloat16 of each number (round to
 * nearest even), no scale or zero.
 */
export interface QuantizeArgs {
  /** f32 rows: row (t, j) at src + (t·heads + j)·headDim·4, for t < n, j < heads. */
  src: number;
  n: number;
  /** Row (t, j) goes to slot from + t of KV head head0 + j. */
  head0: number;
  heads: number;
  from: number;
  capacity: number;
  headDim: number;
  stream: QuantStream;
  kind: QuantKind;
  /** 'unit': f64 [midsLength], the thresholds between the sorted levels codes are assigned against. */
  mids: number;
  midsLength: number;
}
