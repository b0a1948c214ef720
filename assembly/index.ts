// kvpack SIMD kernels. All buffers are raw byte offsets into the one shared memory; nothing here
// allocates. Threaded kernels (matmul, attention) read their arguments from a control block and take
// work items from an atomic counter in it, so every thread runs the same `run(ctrl, thread)`.
// This file is the module's exports: the dispatcher and the single-thread kernels the TS side calls.

import { CTRL_OP, OP_ATTENTION, OP_MATMUL, OP_QUANT_ATTENTION, OP_QUANTIZE, OP_READ, OP_ROPE_ROWS } from '../src/kernels/abi';
import { attentionJob } from './attention';
import { matmulJob } from './matmul';
import { quantAttentionJob } from './packed-attention';
import { quantizeJob } from './quantize';
import { readJob } from './read';
import { ropeRowsJob } from './rope-rows';

// The control block, op codes and argument offsets come from src/kernels/abi.ts (shared with the TS side).
const C_OP: usize = <usize>CTRL_OP << 2;

/** First byte after the module's static data: the JS arena allocates from here. */
export function heapBase(): usize {
  return __heap_base;
}

/** The one job dispatcher. Takes and runs work items of the job in `ctrl` until none is left; returns the job's item count
 *  (the caller waits until DONE reaches it, not for every thread to check in). */
export function run(ctrl: usize, thread: i32): i32 {
  const op = load<i32>(ctrl + C_OP);
  if (op == OP_MATMUL) return matmulJob(ctrl, thread);
  if (op == OP_ATTENTION) return attentionJob(ctrl, thread);
  if (op == OP_QUANT_ATTENTION) return quantAttentionJob(ctrl, thread);
  if (op == OP_QUANTIZE) return quantizeJob(ctrl, thread);
  if (op == OP_READ) return readJob(ctrl);
  if (op == OP_ROPE_ROWS) return ropeRowsJob(ctrl);
  return 0;
}

export { siluMul, add, addBias, rmsnorm, rope, softmax } from './elementwise';
export { embed, toF16 } from './convert';
