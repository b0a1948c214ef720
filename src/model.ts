import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKernels, type KernelOptions } from './kernels/index.js';
import type { Kernels } from './kernels/api.js';
import type { Tokenizer } from './tokenizer/tokenizer.js';
import { MODEL_CLOSED, Session, type SessionOptions } from './session.js';
import type { Checkpoint, CheckpointFormat } from './model/checkpoint.js';
import { kvBytesPerToken, type ModelConfig } from './model/config.js';
import type { ModelIdentity } from './cache/quant/calibfile.js';
import { modelIdentity, modelName } from './model/identity.js';
import { loadCheckpoint, readModelHeader } from './model/load.js';
import { dtypeBytes } from './model/tensor.js';
import { checkPlan, planMemory } from './model/plan.js';
import { uploadLayers, uploadWeights, type WeightGroup, type Weights } from './model/weights.js';
import { UsageError } from './errors.js';

export interface LoadOptions extends KernelOptions {
  /** A tokenizer file to use instead of the one found beside the model (llama2.c checkpoints). */
  tokenizer?: string;
  /**
   * The memory plan checked before any weight is read: the context its sessions will reach (default:
   * the first cache allocation, min(trained context, 1024)) with this cache spec (default full).
   */
  context?: number;
  cache?: string;
  /** Layers per WebAssembly memory (default: as many as the plan fits in 4 GiB); smaller splits the model over more memories. */
  layersPerMemory?: number;
}

/** ../shared/models/ref-6m beside the project (or the working directory), relative to the working directory. */
export function defaultModelPath(): string {
  const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  const candidates = [packageRoot, process.cwd()].map((base) => path.resolve(base, '../shared/models/ref-6m'));
  const found = candidates.find((c) => fs.existsSync(c)) ?? candidates[0]!;
  return path.relative(process.cwd(), found) || '.';
}

export interface ModelInfo {
  source: string;
  format: CheckpointFormat;
  architecture: string;
  parameters: number;
  /** Parameters per stored dtype. */
  dtypes: Record<string, number>;
  /** Tensors per stored dtype. */
  tensorTypes: Record<string, number>;
  /** Stored bits per parameter over all tensors (block scales included). */
  bitsPerWeight: number;
  weightBytes: number;
  config: ModelConfig;
  kvBytesPerTokenF32: number;
  kvBytesPerTokenF16: number;
}

/** A loaded model: weights in kernel memory, its tokenizer, and sessions that run it. */
export class Model {
  private constructor(
    readonly source: string,
    readonly format: CheckpointFormat,
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer,
    readonly kernels: Kernels,
    readonly weights: Weights,
    readonly groups: readonly WeightGroup[],
    private readonly tensorSummary: { parameters: number; dtypes: Record<string, number>; tensorTypes: Record<string, number>; bytes: number },
    /** The context the memory plan was made for (Model.load): sessions allocate that much cache at first. */
    readonly context?: number,
  ) {}

  private identityCache?: ModelIdentity;
  private isClosed = false;

  get closed(): boolean {
    return this.isClosed;
  }

  static async load(modelPath: string, options: LoadOptions = {}): Promise<Model> {
    const header = await readModelHeader(modelPath);
    const context = options.context ?? Math.min(header.config.maxContext, 1024);
    const plan = planMemory(header, { context, cache: options.cache, threads: options.threads });
    checkPlan(plan);
    const ckpt = await loadCheckpoint(modelPath, { tokenizer: options.tokenizer });
    return Model.fromCheckpoint(ckpt, { ...options, context, layersPerMemory: options.layersPerMemory ?? plan.layersPerMemory });
  }

  static async fromCheckpoint(ckpt: Checkpoint, options: KernelOptions & { layersPerMemory?: number; context?: number } = {}): Promise<Model> {
    const c = ckpt.config;
    const perMemory = options.layersPerMemory ?? c.numLayers;
    if (!Number.isInteger(perMemory) || perMemory < 1) throw new UsageError(`layersPerMemory must be a positive integer, got ${perMemory}`);
    const kernels = await createKernels(options);
    const weights = uploadWeights(kernels, c, ckpt, Math.min(perMemory, c.numLayers));
    const groups: WeightGroup[] = [{ kernels, from: 0, to: weights.layers.length, layers: weights.layers, bytes: weights.bytes }];
    for (let from = perMemory; from < c.numLayers; from += perMemory) {
      groups.push(uploadLayers(await createKernels(options), c, ckpt, from, Math.min(from + perMemory, c.numLayers)));
    }
    let parameters = 0;
    let bytes = 0;
    const dtypes: Record<string, number> = {};
    const tensorTypes: Record<string, number> = {};
    for (const t of ckpt.tensors.values()) {
      const count = t.shape.reduce((a, b) => a * b, 1);
      parameters += count;
      bytes += dtypeBytes(t.dtype, count); // not t.data: a large GGUF reads each tensor again on access
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + count;
      tensorTypes[t.dtype] = (tensorTypes[t.dtype] ?? 0) + 1;
    }
    return new Model(ckpt.source, ckpt.format, ckpt.config, ckpt.tokenizer, kernels, weights, groups, { parameters, dtypes, tensorTypes, bytes }, options.context);
  }

  /** Architecture, shape and a hash of the weights (hashed once, when first asked). */
  identity(): ModelIdentity {
    return (this.identityCache ??= modelIdentity(modelName(this.source), this.config, this.weights, this.groups));
  }

  session(options: SessionOptions = {}): Session {
    if (this.isClosed) throw new UsageError(MODEL_CLOSED);
    return new Session(this, options);
  }

  info(): ModelInfo {
    return {
      source: this.source,
      format: this.format,
      architecture: this.config.architecture,
      parameters: this.tensorSummary.parameters,
      dtypes: this.tensorSummary.dtypes,
      tensorTypes: this.tensorSummary.tensorTypes,
      bitsPerWeight: (this.tensorSummary.bytes * 8) / this.tensorSummary.parameters,
      weightBytes: this.groups.reduce((sum, g) => sum + g.bytes, 0),
      config: this.config,
      kvBytesPerTokenF32: kvBytesPerToken(this.config, 4),
      kvBytesPerTokenF16: kvBytesPerToken(this.config, 2),
    };
  }

  /** Stops the kernels' threads; every later use of the model or its sessions throws a UsageError. */
  async close(): Promise<void> {
    this.isClosed = true;
    for (const g of this.groups) await g.kernels.close();
  }
}

export async function loadModel(modelPath: string = defaultModelPath(), options: LoadOptions = {}): Promise<Model> {
  return Model.load(modelPath, options);
}
