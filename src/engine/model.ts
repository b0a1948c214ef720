import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKernels, type KernelOptions } from '../kernels/index.js';
import type { Kernels } from '../kernels/api.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { Batch, MODEL_CLOSED, Session, type BatchOptions, type SessionOptions } from './session.js';
import type { Checkpoint, CheckpointFormat } from '../model/checkpoint.js';
import { kvBytesPerToken, type ModelConfig, type ModelIdentity } from '../model/config.js';
import { ATTENTION_MODES, type AttentionMode } from '../cache/codec.js';
import { modelIdentity, modelName } from '../model/identity.js';
import { loadCheckpoint, readModelHeader } from '../model/load.js';
import { summarizeTensors, type TensorSummary } from '../model/tensor.js';
import { checkPlan, planMemory } from '../model/plan.js';
import { uploadWeights, type Weights } from '../model/weights.js';
import { LayerGroups } from '../cache/layer-groups.js';
import { UsageError } from '../errors.js';

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
  /**
   * How packed KV caches (int, kvquant) compute attention in this model's sessions: 'exact' decodes
   * every number in f32, 'fast' takes integer dot products on rounded queries and weights
   * (docs/quantization.md measures the difference). A session's own `attention` option wins.
   */
  attention?: AttentionMode;
}

/**
 * The default model, shared/models/ref-6m, in the nearest folder above the package that has one (a
 * checkout beside ../shared, or a project beside it that installed kvpack), else above the working
 * directory; relative to the working directory. A UsageError says what to pass when there is none.
 */
export function defaultModelPath(): string {
  const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  const above = (dir: string): string[] => {
    const parent = path.dirname(dir);
    return parent === dir ? [dir] : [dir, ...above(parent)];
  };
  const folders = [...above(path.dirname(packageRoot)), ...above(process.cwd())];
  const found = folders.map((dir) => path.join(dir, 'shared/models/ref-6m')).find((c) => fs.existsSync(c));
  if (found === undefined) {
    throw new UsageError(
      `no model was given and the default one, shared/models/ref-6m, is in no folder above ${packageRoot} or ${process.cwd()}: ` +
        "give a model directory, .gguf or llama2.c .bin (kvpack --model M; the library: loadModel(PATH)), or a Hugging Face repo id " +
        "(--model HuggingFaceTB/SmolLM2-135M; the library: loadModel(await resolveModel('HuggingFaceTB/SmolLM2-135M')))",
    );
  }
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

/** What a model is, from its checkpoint's header alone: nothing is uploaded, no weight is read. */
export async function readModelInfo(modelPath: string = defaultModelPath()): Promise<ModelInfo> {
  const header = await readModelHeader(modelPath);
  return describeModel(header.source, header.format, header.config, summarizeTensors(header.tensors));
}

function describeModel(source: string, format: CheckpointFormat, config: ModelConfig, tensors: TensorSummary): ModelInfo {
  return {
    source,
    format,
    architecture: config.architecture,
    parameters: tensors.parameters,
    dtypes: tensors.dtypes,
    tensorTypes: tensors.tensorTypes,
    bitsPerWeight: (tensors.bytes * 8) / tensors.parameters,
    weightBytes: tensors.bytes,
    config,
    kvBytesPerTokenF32: kvBytesPerToken(config, 4),
    kvBytesPerTokenF16: kvBytesPerToken(config, 2),
  };
}

/** A loaded model: weights in kernel memory, its tokenizer, and sessions that run it. */
export class Model {
  private constructor(
    readonly source: string,
    readonly format: CheckpointFormat,
    readonly config: ModelConfig,
    readonly tokenizer: Tokenizer,
    readonly weights: Weights,
    private readonly tensorSummary: TensorSummary,
    /** The context the memory plan was made for (Model.load): sessions allocate that much cache at first. */
    readonly context?: number,
    /** How its sessions' packed caches compute attention unless a session says (LoadOptions.attention). */
    readonly attention?: AttentionMode,
  ) {}

  private identityCache?: ModelIdentity;
  private isClosed = false;

  get closed(): boolean {
    return this.isClosed;
  }

  /** The first layer group's memory, which also holds the embedding and the classifier. */
  get kernels(): Kernels {
    return this.weights.groups.first.kernels;
  }

  /** What messages and the server call it: its file or folder name without the extension. */
  get name(): string {
    return modelName(this.source);
  }

  static async load(modelPath: string, options: LoadOptions = {}): Promise<Model> {
    const header = await readModelHeader(modelPath);
    const context = options.context ?? Math.min(header.config.maxContext, 1024);
    const plan = planMemory(header, { context, cache: options.cache, threads: options.threads });
    checkPlan(plan);
    const ckpt = await loadCheckpoint(modelPath, { tokenizer: options.tokenizer });
    return Model.fromCheckpoint(ckpt, { ...options, context, layersPerMemory: options.layersPerMemory ?? plan.layersPerMemory });
  }

  static async fromCheckpoint(ckpt: Checkpoint, options: KernelOptions & { layersPerMemory?: number; context?: number; attention?: AttentionMode } = {}): Promise<Model> {
    const c = ckpt.config;
    if (options.attention !== undefined && !ATTENTION_MODES.includes(options.attention)) {
      throw new UsageError(`attention must be one of ${ATTENTION_MODES.join(', ')}, got ${JSON.stringify(options.attention)}`);
    }
    const perMemory = options.layersPerMemory ?? c.numLayers;
    if (!Number.isInteger(perMemory) || perMemory < 1) throw new UsageError(`layersPerMemory must be a positive integer, got ${perMemory}`);
    const memories: Kernels[] = [];
    for (let from = 0; from < c.numLayers; from += perMemory) memories.push(await createKernels(options));
    let weights: Weights;
    try {
      weights = uploadWeights(LayerGroups.fill(memories, perMemory, c.numLayers), c, ckpt);
    } catch (e) {
      for (const k of memories) await k.close(); // a bad tensor leaves no threads behind
      throw e;
    }
    return new Model(ckpt.source, ckpt.format, ckpt.config, ckpt.tokenizer, weights, summarizeTensors(ckpt.tensors.values()), options.context, options.attention);
  }

  /** Architecture, shape and a hash of the weights (hashed once, when first asked). */
  identity(): ModelIdentity {
    return (this.identityCache ??= modelIdentity(modelName(this.source), this.config, this.weights));
  }

  session(options: SessionOptions = {}): Session {
    if (this.isClosed) throw new UsageError(MODEL_CLOSED);
    return new Session(this, options);
  }

  /** Activation buffers for sessions that step together: one prompt prefilled a chunk at a time, `rows` sessions decoded in one pass. */
  batch(options: BatchOptions): Batch {
    return new Batch(this, options);
  }

  info(): ModelInfo {
    return describeModel(this.source, this.format, this.config, this.tensorSummary);
  }

  /** Stops the kernels' threads; every later use of the model or its sessions throws a UsageError. */
  async close(): Promise<void> {
    this.isClosed = true;
    for (const g of this.weights.groups.list) await g.kernels.close();
  }
}

export async function loadModel(modelPath: string = defaultModelPath(), options: LoadOptions = {}): Promise<Model> {
  return Model.load(modelPath, options);
}
