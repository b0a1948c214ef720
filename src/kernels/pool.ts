import { Worker } from 'node:worker_threads';
import { CTRL_ACTIVE, CTRL_DONE, CTRL_ERR, CTRL_OP, CTRL_SEQ, OP_QUIT } from './abi.js';
import { WORKER_SOURCE } from './worker.js';

/** Iterations of Atomics.load a thread polls before it sleeps in Atomics.wait (~0.1-0.5 ms): long
 *  enough that workers stay awake across the small single-threaded ops between two matmuls. */
const SPIN = 20_000;
/** What the worker script needs of abi.ts (it cannot import it). */
const WORKER_ABI = { CTRL_SEQ, CTRL_DONE, CTRL_OP, CTRL_ERR, CTRL_ACTIVE, OP_QUIT };

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
        workers.push(new Worker(WORKER_SOURCE, { eval: true, workerData: { module, memory, ctrl, index: i + 1, spin: SPIN, abi: WORKER_ABI } }));
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
   * One job runs in three steps. `lock` makes SEQ odd (no worker reads the control block then) and
   * waits until no worker is still inside the previous job; the caller then writes the job (op,
   * threads, arguments). `publish` makes SEQ even and wakes the workers, unless `wake` is false (a job
   * too small to be worth waking them for). The caller runs its own share of work items, which tells
   * it the job's item count, and `wait`s until that many are DONE. A worker that wakes late, e.g.
   * because another process holds its core, finds nothing left and is not waited for.
   */
  lock(): void {
    const a = this.i32;
    const b = this.base;
    Atomics.add(a, b + CTRL_SEQ, 1); // odd: writing
    for (let k = 0; Atomics.load(a, b + CTRL_ACTIVE) !== 0; ) {
      if (++k > SPIN) {
        Atomics.wait(a, b + CTRL_ACTIVE, Atomics.load(a, b + CTRL_ACTIVE), 1);
        k = 0;
      }
    }
  }

  publish(wake: boolean): void {
    const a = this.i32;
    const b = this.base;
    Atomics.store(a, b + CTRL_DONE, 0);
    Atomics.store(a, b + CTRL_ERR, 0);
    Atomics.add(a, b + CTRL_SEQ, 1); // even: published
    // Small jobs run on this thread only, but still through the sequence lock: a worker that was
    // late for the previous job may join this one, and then must see complete arguments.
    if (wake) Atomics.notify(a, b + CTRL_SEQ);
  }

  wait(items: number): void {
    const a = this.i32;
    const b = this.base;
    let k = 0;
    for (;;) {
      const done = Atomics.load(a, b + CTRL_DONE);
      if (done >= items) break;
      if (Atomics.load(a, b + CTRL_ERR)) throw new Error('a kernel worker thread failed (wasm trap)');
      if (++k > SPIN) {
        Atomics.wait(a, b + CTRL_DONE, done, 20);
        k = 0;
      }
    }
  }

  async close(): Promise<void> {
    const a = this.i32;
    const b = this.base;
    this.lock();
    Atomics.store(a, b + CTRL_OP, OP_QUIT);
    this.publish(true);
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
