import { Worker } from 'node:worker_threads';
import { WORKER_SOURCE } from './worker.js';

/** Int32 word indices inside the control block (byte offsets /4; must match assembly/index.ts). */
export const SEQ = 0;
export const DONE = 1;
export const OP = 2;
export const NTHREADS = 3;
export const NEXT = 4;
export const ERR = 5;
/** Byte offset of the job arguments inside the control block. */
export const ARGS = 32;
export const CONTROL_BYTES = 256;

/** Iterations of Atomics.load a thread polls before it sleeps in Atomics.wait (tens of µs). */
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

  /** Wakes the workers on the job already written in the control block, runs `self`, waits for all. */
  run(self: () => void): void {
    const a = this.i32;
    const b = this.base;
    Atomics.store(a, b + DONE, 0);
    Atomics.store(a, b + ERR, 0);
    Atomics.add(a, b + SEQ, 1);
    Atomics.notify(a, b + SEQ);
    let failure: unknown;
    try {
      self();
    } catch (e) {
      failure = e;
    }
    const want = this.workers.length;
    let k = 0;
    for (;;) {
      const done = Atomics.load(a, b + DONE);
      if (done >= want) break;
      if (++k > SPIN) {
        Atomics.wait(a, b + DONE, done, 50);
        k = 0;
      }
    }
    if (failure !== undefined) throw failure;
    if (Atomics.load(a, b + ERR)) throw new Error('a kernel worker thread failed (wasm trap)');
  }

  async close(): Promise<void> {
    const a = this.i32;
    const b = this.base;
    Atomics.store(a, b + OP, -1);
    Atomics.add(a, b + SEQ, 1);
    Atomics.notify(a, b + SEQ);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
