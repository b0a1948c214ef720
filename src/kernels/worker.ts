/**
 * Source of the kernel worker thread, run with `new Worker(WORKER_SOURCE, { eval: true })`.
 *
 * Why a string and not a worker file: under vitest the kernels run from src/*.ts and a Worker cannot
 * load TypeScript, while after tsc they run from dist/. An eval'd script needs no path resolution in
 * either case. It is plain CommonJS JavaScript and must stay self-contained (no imports of our modules).
 *
 * Protocol (Int32 words of the control block at `ctrl`, see wasm.ts): the worker spins briefly on SEQ,
 * then sleeps in Atomics.wait; when SEQ changes it runs `run(ctrl, index)` in its own instance of the
 * kernel module (same shared memory), adds 1 to DONE and notifies. OP < 0 means quit.
 */
export const WORKER_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { module, memory, ctrl, index, spin } = workerData;
const { exports } = new WebAssembly.Instance(module, { env: { memory } });
const i32 = new Int32Array(memory.buffer);
const SEQ = ctrl >> 2, DONE = SEQ + 1, OP = SEQ + 2, ERR = SEQ + 5;
let seen = Atomics.load(i32, SEQ);
parentPort.postMessage('ready');
for (;;) {
  let k = 0;
  while (Atomics.load(i32, SEQ) === seen) {
    if (++k > spin) {
      Atomics.wait(i32, SEQ, seen);
      k = 0;
    }
  }
  seen = Atomics.load(i32, SEQ);
  if (Atomics.load(i32, OP) < 0) break;
  try {
    exports.run(ctrl, index);
  } catch (e) {
    Atomics.store(i32, ERR, 1);
  }
  Atomics.add(i32, DONE, 1);
  Atomics.notify(i32, DONE);
}
parentPort.close();
`;
