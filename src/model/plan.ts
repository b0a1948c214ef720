import fs from 'node:fs';
import os from 'node:os';
import { createCache } from '../cache/build.js';
import { parseSpec, printSpec } from '../cache/registry.js';
import { MemoryPlanError } from '../errors.js';
import { Arena } from '../kernels/arena.js';
import { ReferenceKernels } from '../kernels/reference.js';
import { attentionScratchBound, matmulScratchBound } from '../kernels/scratch.js';
import { formatBytes } from '../util/progress.js';
import { expectedShapes } from './checkpoint.js';
import type { ModelConfig } from './config.js';
import { scratchBytes } from './forward.js';
import type { ModelHeader } from './load.js';

/** Bytes one WebAssembly memory can address (65536 pages of 64 KiB). */
export const MEMORY_LIMIT_BYTES = 2 ** 32;
/** Room each memory keeps beyond the plan's counts: the kernels' own scratch (grown on demand), page alignment of blocks. */
export const MEMORY_RESERVE_BYTES = 64 * 2 ** 20;

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
  /** Activations and kernel scratch, in every memory. */
  scratchBytes: number;
  neededBytes: number;
  /** Layers each WebAssembly memory holds (the first also holds the embedding and classifier); 0: not even one fits. */
  layersPerMemory: number;
  memories: number;
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
 * arena, so every codec's real bytes per token count), activation and kernel scratch; and how many
 * layers each WebAssembly memory (4 GiB at most) holds, so that the model and its cache may use
 * the machine's memory.
 */
export function planMemory(header: Pick<ModelHeader, 'source' | 'config' | 'weightBytes'>, request: PlanRequest): MemoryPlan {
  const c = header.config;
  const cache = printSpec(parseSpec(request.cache ?? 'full'));
  const kv = kvCost(c, cache);
  const threads = request.threads ?? os.availableParallelism();
  const available = request.available ?? availableMemory();
  // the embedding and classifier (in the first memory), from the bytes per parameter the file stores
  const bytesPerParameter = header.weightBytes / parameterCount(c);
  const headBytes = c.vocabSize * c.hiddenSize * (c.tiedEmbeddings ? 1 : 2) * bytesPerParameter;
  const layerWeights = (header.weightBytes - headBytes) / c.numLayers;
  const at = (context: number) => {
    // each memory has its activations and, per thread, one scratch for attention (a score per visible
    // slot) or a matmul (a chunk's prepared activations or dequantised rows)
    const chunk = request.chunkSize ?? 128;
    const matmul = matmulScratchBound(chunk, Math.max(c.hiddenSize, c.intermediateSize, c.numHeads * c.headDim));
    const scratch = scratchBytes(c, chunk) + threads * Math.max(matmul, attentionScratchBound(c.numHeads, c.numKvHeads, c.headDim, context));
    const kvBytes = kv.fixed + kv.perToken * context;
    const perLayer = layerWeights + kvBytes / c.numLayers;
    const layersPerMemory = Math.min(c.numLayers, Math.floor((MEMORY_LIMIT_BYTES - MEMORY_RESERVE_BYTES - scratch - headBytes) / perLayer));
    const memories = layersPerMemory >= 1 ? Math.ceil(c.numLayers / layersPerMemory) : 1;
    const neededBytes = header.weightBytes + kvBytes + memories * scratch;
    return { kvBytes, scratchBytes: memories * scratch, neededBytes, layersPerMemory: Math.max(0, layersPerMemory), memories, fits: layersPerMemory >= 1 && neededBytes <= available.bytes };
  };
  const plan = at(request.context);
  return {
    source: header.source,
    cache,
    context: request.context,
    weightBytes: header.weightBytes,
    kvBytesPerToken: kv.perToken,
    availableBytes: available.bytes,
    availableSource: available.source,
    memoryLimitBytes: MEMORY_LIMIT_BYTES,
    ...plan,
    longestContext: longestFitting((context) => at(context).fits),
  };
}

/** The largest n ≥ 0 with fits(n), fits being monotone (0 when even fits(0) fails). */
function longestFitting(fits: (n: number) => boolean): number {
  if (!fits(0)) return 0;
  let lo = 0;
  let hi = 1;
  while (fits(hi) && hi < 2 ** 40) [lo, hi] = [hi, hi * 2];
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** Numbers in the tensors a Llama of this shape has. */
function parameterCount(c: ModelConfig): number {
  let n = 0;
  for (const shape of expectedShapes(c).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/** Throws a MemoryPlanError naming both numbers and the longest context that fits, unless the plan fits. */
export function checkPlan(plan: MemoryPlan): void {
  if (plan.fits) return;
  const parts = `weights ${formatBytes(plan.weightBytes)}, KV ${formatBytes(plan.kvBytes)}, scratch ${formatBytes(plan.scratchBytes)}`;
  const available = `${formatBytes(plan.availableBytes)} are available (${plan.availableSource})`;
  const limit = plan.neededBytes > plan.availableBytes
    ? available
    : `a WebAssembly memory (${formatBytes(plan.memoryLimitBytes)}) cannot hold one layer with its cache and scratch, and the first one the embedding and classifier too (${available})`;
  const longest = plan.longestContext > 0
    ? `the longest context that fits is ${plan.longestContext} tokens`
    : 'no context fits: the weights alone are too large';
  throw new MemoryPlanError(
    `${plan.source}: needs ${formatBytes(plan.neededBytes)} for ${plan.context} tokens of "${plan.cache}" (${parts}) but ${limit}; ${longest}`,
    plan.neededBytes,
    plan.availableBytes,
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
    ['  available', `${formatBytes(plan.availableBytes)} (${plan.availableSource})`],
    ['  memories', `${plan.memories} of at most ${formatBytes(plan.memoryLimitBytes)} (${plan.layersPerMemory} layers each)`],
    ['  fits', plan.fits ? 'yes' : `no; longest context that fits: ${plan.longestContext} tokens`],
  ];
}

/**
 * Bytes a cache allocates in kernel memory: a fixed part and a part per token of capacity, from two
 * builds on a scratch arena. `grown`: per slot it has grown to, where a budget starts it smaller.
 */
export function kvCost(c: ModelConfig, spec: string, grown = false): { fixed: number; perToken: number } {
  const SMALL = 32;
  const used = (capacity: number): number => {
    const k = scratchKernels();
    createCache(k, c, parseSpec(spec), capacity, { measureOnly: true, grown });
    return k.arena.used;
  };
  const small = used(SMALL);
  const perToken = (used(2 * SMALL) - small) / SMALL;
  return { fixed: Math.max(0, small - SMALL * perToken), perToken };
}

/**
 * Stored bits per key/value number of a spec's codec on a model of shape `c` (scales, zeros, LUTs and
 * outliers counted, shared tables amortised away), from a build on a scratch arena.
 */
export function cacheBitsPerValue(c: ModelConfig, spec: string): number {
  return measuredCache(scratchKernels(), c, spec, 1).codec.bitsPerValue();
}

/** Kernels on a memory of their own, to build a cache only to measure it. */
export const scratchKernels = () => new ReferenceKernels(new Arena(new WebAssembly.Memory({ initial: 1, maximum: 65536 }), 1024));

// no model yet: files named by the spec are read when it runs
const measuredCache = (k: ReferenceKernels, c: ModelConfig, spec: string, capacity: number) => createCache(k, c, parseSpec(spec), capacity, { measureOnly: true });

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
