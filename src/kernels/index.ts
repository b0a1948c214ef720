import os from 'node:os';
import type { Kernels } from './api.js';
import { Arena } from './arena.js';
import { ReferenceKernels } from './reference.js';
import type { BlockDot } from './wasm.js';

export type { Kernels } from './api.js';
export type { AttentionArgs, Matrix, SlotDType } from './types.js';
export { Arena } from './arena.js';

export interface KernelOptions {
  /** 'wasm' (default): SIMD kernels and a worker pool; 'reference': scalar TypeScript, for tests. */
  backend?: 'wasm' | 'reference';
  /** Threads for the wasm backend, the calling thread included (default: number of cores). */
  threads?: number;
  /** wasm: how GGML block rows meet the activations in a matvec (see BlockDot). */
  blockDot?: BlockDot;
}

export async function createKernels(options: KernelOptions = {}): Promise<Kernels> {
  const backend = options.backend ?? 'wasm';
  if (backend === 'reference') {
    const memory = new WebAssembly.Memory({ initial: 16, maximum: 65536 });
    return new ReferenceKernels(new Arena(memory, 1024));
  }
  const { createWasmKernels } = await import('./wasm.js');
  return createWasmKernels(options.threads ?? os.availableParallelism(), options.blockDot);
}
