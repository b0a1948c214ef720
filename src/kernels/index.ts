import os from 'node:os';
import type { Kernels } from './api.js';
import { Arena } from './arena.js';
import { ReferenceKernels } from './reference.js';
import { UsageError } from '../errors.js';
import { int, read } from '../util/schema.js';
import { MATMUL_MODES, type MatmulMode, type SimdBuild } from './types.js';

export type { Kernels } from './api.js';
export type { AttentionArgs, Matrix, MatmulMode, SimdBuild, SlotDType } from './types.js';
export { MATMUL_MODES } from './types.js';
export { Arena } from './arena.js';

export interface KernelOptions {
  /** 'wasm' (default): SIMD kernels and a worker pool; 'reference': scalar TypeScript, for tests. */
  backend?: 'wasm' | 'reference';
  /** Threads for the wasm backend, the calling thread included (default: number of cores). */
  threads?: number;
  /** wasm: how quantized weights meet the activations, 'fast' (default) or 'exact' (see MatmulMode). */
  matmul?: MatmulMode;
}

/**
 * Worker threads, the calling thread included: at most the machine's cores. More is refused rather
 * than clamped: each is a worker with its own memory, and past the cores they only contend.
 */
export function threadsParam() {
  return int({ min: 1, max: os.availableParallelism(), default: os.availableParallelism(), doc: 'threads, the calling thread included' });
}

/** Which wasm kernel build this process runs (KVPACK_SIMD, else relaxed SIMD where it validates). */
export async function kernelBuild(): Promise<SimdBuild> {
  const { simdBuild } = await import('./wasm.js');
  return simdBuild();
}

export async function createKernels(options: KernelOptions = {}): Promise<Kernels> {
  const backend = options.backend ?? 'wasm';
  if (backend === 'reference') {
    const memory = new WebAssembly.Memory({ initial: 16, maximum: 65536 });
    return new ReferenceKernels(new Arena(memory, 1024));
  }
  const { createWasmKernels } = await import('./wasm.js');
  const threads = read(threadsParam(), options.threads ?? os.availableParallelism());
  if ('problem' in threads) throw new UsageError(`threads ${threads.problem} (the cores of this machine), got ${options.threads}`);
  if (options.matmul !== undefined && !MATMUL_MODES.includes(options.matmul)) {
    throw new UsageError(`matmul must be ${MATMUL_MODES.join(' or ')}, got "${String(options.matmul)}"`);
  }
  return createWasmKernels(threads.value, options.matmul);
}
