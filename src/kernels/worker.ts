/**
 * Source of the kernel worker thread, run with `new Worker(WORKER_SOURCE, { eval: true })`.
 *
 * Why a string and not a worker file: under vitest the kernels run from src/*.ts and a Worker cannot
 * load TypeScript, while after tsc they run from dist/. An eval'd script needs no path resolution in
 * either case. It is plain CommonJS JavaScript and must stay self-contained (no imports of our modules):
 * the control-block word indices and OP_QUIT of abi.ts come in through workerData.abi.
 *
 * Protocol (Int32 words of the control block at `ctrl`; see pool.ts): SEQ is a sequence lock, odd
 * while the caller writes a job. A worker spins briefly, then sleeps in Atomics.wait, until SEQ is
 * even and new; it registers in ACTIVE and re-checks SEQ (so it never reads half-written arguments),
 * then takes work items with the kernel module's one dispatcher `run(ctrl, index)`, in its own
 * instance of the module on the same shared memory. OP = OP_QUIT means quit.
 */
export const WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, ctrl, index, spin, abi } = workerData;
const { exports } = new WebAssembly.Instance(module, { env: { memory } });
const i32 = new Int32Array(memory.buffer);
const base = ctrl >> 2;
const SEQ = base + abi.CTRL_SEQ, DONE = base + abi.CTRL_DONE, OP = base + abi.CTRL_OP;
const ERR = base + abi.CTRL_ERR, ACTIVE = base + abi.CTRL_ACTIVE;
let seen = Atomics.load(i32, SEQ);
parentPort.postMessage('ready');
for (;;) {
  let s;
  for (let k = 0; ; ) {
    s = Atomics.load(i32, SEQ);
    if (s !== seen && (s & 1) === 0) break;
    if (++k > spin) {
      Atomics.wait(i32, SEQ, s);
      k = 0;
    }
  }
  Atomics.add(i32, ACTIVE, 1);
  if (Atomics.load(i32, SEQ) !== s) {
    Atomics.sub(i32, ACTIVE, 1);
    continue;
  }
  seen = s;
  if (Atomics.load(i32, OP) === abi.OP_QUIT) {
    Atomics.sub(i32, ACTIVE, 1);
    break;
  }
  try {
    exports.run(ctrl, index);
  } catch (e) {
    Atomics.store(i32, ERR, 1);
  }
  Atomics.sub(i32, ACTIVE, 1);
  Atomics.notify(i32, DONE);
}
parentPort.close();
`;
