import { Worker } from 'node:worker_threads';
import { WORKER_SOURCE } from './worker.js';

/** Int32 word indices inside the control block (byte offsets /4; must match assembly/index.ts). */
export const SEQ = 0;
export const DONE = 1;
export const OP = 2;
export const NTHREADS = 3;
export const NEXT = 4;
export const ERR = 5;
export const ACTIVE = 6;
/** Byte offset of the job arguments inside the control block. */
export const ARGS = 32;
export const CONTROL_BYTES = 256;

/** Iterations of Atomics.load a thread polls before it sleeps in Atomics.wait (~0.1-0.5 ms): long
 *  enough that workers stay awake across the small single-threaded ops between two matmuls. */
const SPIN = 20_000;

/**
 * Worker threads that share the kernel memory and run jobs described in a control block. The caller
 * runs a share of each job itself and then waits (spin, then Atomics.wait) for the workers' DONE count.
 */
export class Pool {
  private readonly i32: Int32Array;
  private readonly base: number;

  private constructor(
    memory: WebAssembly.Memory,
    ctrl: number,
    private readonly workers: Worker[],
  ) {
    // The control block lies in the memory's first pages, so a view of the initial buffer stays valid
    // after the memory grows (shared buffers are never detached).
    this.i32 = new Int32Array(memory.buffer);
    this.base = ctrl >> 2;
  }

  static async start(module: WebAssembly.Module, memory: WebAssembly.Memory, ctrl: number, count: number): Promise<Pool> {
    const workers: Worker[] = [];
    try {
      for (let i = 0; i < count; i++) {
        workers.push(new Worker(WORKER_SOURCE, { eval: true, workerData: { module, memory, ctrl, index: i + 1, spin: SPIN } }));
      }
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              w.once('message', () => resolve());
              w.once('error', reject);
              w.once('exit', (code) => reject(new Error(`kernel worker exited early (code ${code})`)));
            }),
        ),
      );
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw e;
    }
    for (const w of workers) {
      w.removeAllListeners();
      w.on('error', () => {}); // failures surface through the control block instead
      w.unref();
    }
    return new Pool(memory, ctrl, workers);
  }

  get size(): number {
    return this.workers.length;
  }

  /**
   * Runs one job: `write` fills the control block while SEQ is odd (no worker reads it then, and none
   * is still inside the previous job), the workers are woken, `self` takes work items on this thread
   * and returns the job's item count, and we wait until that many items are DONE. A worker that wakes
   * late, e.g. because another process holds its core, finds nothing left and is not waited for.
   * With `wake` false the workers are not notified (a job too small to be worth waking them for).
   */
  run(write: () => void, self: () => number, wake = true): void {
    const a = this.i32;
    const b = this.base;
    Atomics.add(a, b + SEQ, 1); // odd: writing
    for (let k = 0; Atomics.load(a, b + ACTIVE) !== 0; ) {
      if (++k > SPIN) {
        Atomics.wait(a, b + ACTIVE, Atomics.load(a, b + ACTIVE), 1);
        k = 0;
      }
    }
    try {
      write();
    } finally {
      Atomics.store(a, b + DONE, 0);
      Atomics.store(a, b + ERR, 0);
      Atomics.add(a, b + SEQ, 1); // even: published
    }
    // Small jobs run on this thread only, but still through the sequence lock: a worker that was
    // late for the previous job may join this one, and then must see complete arguments.
    if (wake) Atomics.notify(a, b + SEQ);
    let items = 0;
    let failure: unknown;
    try {
      items = self();
    } catch (e) {
      failure = e;
    }
    if (failure !== undefined) throw failure;
    let k = 0;
    for (;;) {
      const done = Atomics.load(a, b + DONE);
      if (done >= items) break;
      if (Atomics.load(a, b + ERR)) throw new Error('a kernel worker thread failed (wasm trap)');
      if (++k > SPIN) {
        Atomics.wait(a, b + DONE, done, 20);
        k = 0;
      }
    }
  }

  async close(): Promise<void> {
    const a = this.i32;
    const b = this.base;
    Atomics.add(a, b + SEQ, 1);
    while (Atomics.load(a, b + ACTIVE) !== 0) Atomics.wait(a, b + ACTIVE, Atomics.load(a, b + ACTIVE), 1);
    Atomics.store(a, b + OP, -1);
    Atomics.add(a, b + SEQ, 1);
    Atomics.notify(a, b + SEQ);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
