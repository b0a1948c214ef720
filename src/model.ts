import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKernels, type KernelOptions } from './kernels/index.js';
import type { Kernels } from './kernels/api.js';
import type { Tokenizer } from './tokenizer/tokenizer.js';
import { Session, type SessionOptions } from './session.js';
import type { Checkpoint, CheckpointFormat } from './model/checkpoint.js';
import { kvBytesPerToken, type ModelConfig } from './model/config.js';
import { loadCheckpoint, readModelHeader } from './model/load.js';
import { checkPlan, planMemory } from './model/plan.js';
import { uploadWeights, type Weights } from './model/weights.js';

export interface LoadOptions extends KernelOptions {
  /** A tokenizer file to use instead of the one found beside the model (llama2.c checkpoints). */
  tokenizer?: string;
  /**
   * The memory plan checked before any weight is read: the context its sessions will reach (default:
   * the first cache allocation, min(trained context, 1024)) with this cache spec (default full).
   */
  context?: number;
  cache?: string;
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
  dtypes: Record<string, number>;
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
    private readonly tensorSummary: { parameters: number; dtypes: Record<string, number> },
  ) {}

  static async load(modelPath: string, options: LoadOptions = {}): Promise<Model> {
    const header = await readModelHeader(modelPath);
    const context = options.context ?? Math.min(header.config.maxContext, 1024);
    checkPlan(planMemory(header, { context, cache: options.cache, threads: options.threads }));
    const ckpt = await loadCheckpoint(modelPath, { tokenizer: options.tokenizer });
    return Model.fromCheckpoint(ckpt, options);
  }

  static async fromCheckpoint(ckpt: Checkpoint, options: KernelOptions = {}): Promise<Model> {
    const kernels = await createKernels(options);
    const weights = uploadWeights(kernels, ckpt.config, ckpt);
    let parameters = 0;
    const dtypes: Record<string, number> = {};
    for (const t of ckpt.tensors.values()) {
      const count = t.shape.reduce((a, b) => a * b, 1);
      parameters += count;
      dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + count;
    }
    return new Model(ckpt.source, ckpt.format, ckpt.config, ckpt.tokenizer, kernels, weights, { parameters, dtypes });
  }

  session(options: SessionOptions = {}): Session {
    return new Session(this, options);
  }

  info(): ModelInfo {
    return {
      source: this.source,
      format: this.format,
      architecture: this.config.architecture,
      parameters: this.tensorSummary.parameters,
      dtypes: this.tensorSummary.dtypes,
      weightBytes: this.weights.bytes,
      config: this.config,
      kvBytesPerTokenF32: kvBytesPerToken(this.config, 4),
      kvBytesPerTokenF16: kvBytesPerToken(this.config, 2),
    };
  }

  async close(): Promise<void> {
    await this.kernels.close();
  }
}

export async function loadModel(modelPath: string = defaultModelPath(), options: LoadOptions = {}): Promise<Model> {
  return Model.load(modelPath, options);
}
