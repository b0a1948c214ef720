import fs from 'node:fs';
import os from 'node:os';
import { createCache } from '../cache/build.js';
import { parseSpec, printSpec } from '../cache/registry.js';
import { MemoryPlanError } from '../errors.js';
import { Arena } from '../kernels/arena.js';
import { ReferenceKernels } from '../kernels/reference.js';
import { formatBytes } from '../util/progress.js';
import type { ModelConfig } from './config.js';
import { scratchBytes } from './forward.js';
import type { ModelHeader } from './load.js';

/** Bytes one WebAssembly memory can address (65536 pages of 64 KiB). */
export const MEMORY_LIMIT_BYTES = 2 ** 32;

export interface PlanRequest {
  /** Tokens the cache must hold: a prompt of this length is held whole before the policy compresses it. */
  context: number;
  /** Cache spec (default full). */
  cache?: string;
  /** Tokens per forward call (the session's chunkSize, default 128). */
  chunkSize?: number;
  /** Kernel threads, each with its own attention scratch (default: number of cores). */
  threads?: number;
  /** Memory the machine can give, instead of asking it (tests). */
  available?: { bytes: number; source: string };
}

/** What a model and a cache at a context need, against what the machine and one kernel memory give. */
export interface MemoryPlan {
  source: string;
  cache: string;
  context: number;
  weightBytes: number;
  kvBytes: number;
  /** Bytes the cache allocates per token of context (codec storage, slot positions, attention buffers). */
  kvBytesPerToken: number;
  scratchBytes: number;
  neededBytes: number;
  /** Free memory now (or what the cgroup still allows, if less). */
  availableBytes: number;
  availableSource: string;
  /** What one WebAssembly memory holds. */
  memoryLimitBytes: number;
  fits: boolean;
  /** The longest context whose plan fits (0: not even the weights do). */
  longestContext: number;
}

/**
 * Plans memory from a model header, before any weight is read: weights as stored, the KV cache the
 * spec allocates at the context (measured by building it at two small capacities on a scratch
 * arena, so every codec's real bytes per token count), activation and kernel scratch.
 */
export function planMemory(header: ModelHeader, request: PlanRequest): MemoryPlan {
  const c = header.config;
  const cache = printSpec(parseSpec(request.cache ?? 'full'));
  const kv = kvCost(c, cache);
  const threads = request.threads ?? os.availableParallelism();
  // each thread's attention scratch holds one score per visible slot for a KV group's query heads
  const scratchPerToken = threads * 4 * (c.numHeads / c.numKvHeads);
  const fixed = header.weightBytes + kv.fixed + scratchBytes(c, request.chunkSize ?? 128) + threads * 2 ** 20;
  const perToken = kv.perToken + scratchPerToken;
  const available = request.available ?? availableMemory();
  const limit = Math.min(available.bytes, MEMORY_LIMIT_BYTES);
  const context = request.context;
  const needed = fixed + perToken * context;
  return {
    source: header.source,
    cache,
    context,
    weightBytes: header.weightBytes,
    kvBytes: kv.fixed + kv.perToken * context,
    kvBytesPerToken: kv.perToken,
    scratchBytes: fixed - header.weightBytes - kv.fixed + scratchPerToken * context,
    neededBytes: needed,
    availableBytes: available.bytes,
    availableSource: available.source,
    memoryLimitBytes: MEMORY_LIMIT_BYTES,
    fits: needed <= limit,
    longestContext: Math.max(0, Math.floor((limit - fixed) / perToken)),
  };
}

/** Throws a MemoryPlanError naming both numbers and the longest context that fits, unless the plan fits. */
export function checkPlan(plan: MemoryPlan): void {
  if (plan.fits) return;
  const parts = `weights ${formatBytes(plan.weightBytes)}, KV ${formatBytes(plan.kvBytes)}, scratch ${formatBytes(plan.scratchBytes)}`;
  const limit = plan.availableBytes < plan.memoryLimitBytes
    ? `${formatBytes(plan.availableBytes)} are available (${plan.availableSource})`
    : `one WebAssembly memory holds ${formatBytes(plan.memoryLimitBytes)} (${formatBytes(plan.availableBytes)} ${plan.availableSource})`;
  const longest = plan.longestContext > 0
    ? `the longest context that fits is ${plan.longestContext} tokens`
    : 'no context fits: the weights alone are too large';
  throw new MemoryPlanError(
    `${plan.source}: needs ${formatBytes(plan.neededBytes)} for ${plan.context} tokens of "${plan.cache}" (${parts}) but ${limit}; ${longest}`,
    plan.neededBytes,
    Math.min(plan.availableBytes, plan.memoryLimitBytes),
    plan.longestContext,
  );
}

/** The plan as rows of text (kvpack info). */
export function planRows(plan: MemoryPlan): [string, string][] {
  return [
    ['plan', `${plan.context} tokens of ${plan.cache}`],
    ['  weights', formatBytes(plan.weightBytes)],
    ['  KV cache', `${formatBytes(plan.kvBytes)} (${plan.kvBytesPerToken.toFixed(1)} bytes/token)`],
    ['  scratch', formatBytes(plan.scratchBytes)],
    ['  needed', formatBytes(plan.neededBytes)],
    ['  available', `${formatBytes(plan.availableBytes)} (${plan.availableSource}); one kernel memory ${formatBytes(plan.memoryLimitBytes)}`],
    ['  fits', plan.fits ? 'yes' : `no; longest context that fits: ${plan.longestContext} tokens`],
  ];
}

/** Bytes a cache allocates: a fixed part and a part per token of capacity, from two builds on a scratch arena. */
function kvCost(c: ModelConfig, spec: string): { fixed: number; perToken: number } {
  const SMALL = 256;
  const used = (capacity: number): number => {
    const k = new ReferenceKernels(new Arena(new WebAssembly.Memory({ initial: 1, maximum: 65536 }), 1024));
    createCache(k, c, parseSpec(spec), capacity);
    return k.arena.used;
  };
  const small = used(SMALL);
  const perToken = (used(2 * SMALL) - small) / SMALL;
  return { fixed: Math.max(0, small - SMALL * perToken), perToken };
}

/** Free memory (MemAvailable where /proc/meminfo has it), or what the cgroup still allows if that is less. */
export function availableMemory(): { bytes: number; source: string } {
  const meminfo = readText('/proc/meminfo');
  const kib = meminfo && /^MemAvailable:\s+(\d+) kB/m.exec(meminfo)?.[1];
  let best = { bytes: kib ? Number(kib) * 1024 : os.freemem(), source: 'free memory' };
  const max = Number(readText('/sys/fs/cgroup/memory.max'));
  const current = Number(readText('/sys/fs/cgroup/memory.current'));
  if (Number.isFinite(max) && Number.isFinite(current) && max - current < best.bytes) {
    best = { bytes: Math.max(0, max - current), source: 'left under the cgroup limit' };
  }
  return best;
}

function readText(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return undefined;
  }
}
