import { LlamaCpp } from './engines.js';
import { MODEL_SPECS, type BenchModel, type ModelSpec } from './models.js';
import type { Table } from './table.js';

export interface BenchOptions {
  /** Fewer tokens and runs: a smoke run, not numbers to quote. */
  quick: boolean;
  /** `--only` groups (ref-6m, 135m, or a model id); undefined runs every model. */
  only: string[] | undefined;
  threads: number[];
  json: boolean;
  /** Where generated random models are written and reused. */
  cacheDir: string;
  /** Measured runs per number (after one warm-up run); the median is reported. */
  runs: number;
  /** kvpack prefill chunk sizes to try; the best is reported. */
  chunkSizes: number[];
  /** Speed: tokens decoded per run (after a prompt as long) and prompt tokens prefilled, when not the defaults. */
  decodeTokens?: number;
  prefillTokens?: number;
  /** Which file kvpack loads: the GGUF llama.cpp runs (default) or the HF directory with the same weights. */
  kvpackFormat: 'gguf' | 'hf';
  /** kvpack cache spec; llama.cpp's default KV cache is f16, hence full+fp16. */
  cache: string;
  /** llama.cpp flash attention: 'auto' lets it choose (as llama.cpp does by default). */
  flashAttention: boolean | 'auto';
  /** Section ids to run; undefined runs all. */
  sections: string[] | undefined;
}

/** What sections share: options, a logger to stderr, the models (written once), the llama.cpp runtime (loaded once). */
export class BenchContext {
  private llamaCpp: Promise<LlamaCpp> | undefined;
  private readonly models = new Map<string, Promise<BenchModel>>();

  constructor(readonly options: BenchOptions) {}

  log(msg: string): void {
    process.stderr.write(`${msg}\n`);
  }

  selectedModels(): ModelSpec[] {
    const only = this.options.only;
    return only ? MODEL_SPECS.filter((m) => m.groups.some((g) => only.includes(g))) : MODEL_SPECS;
  }

  model(spec: ModelSpec): Promise<BenchModel> {
    let m = this.models.get(spec.id);
    if (!m) {
      m = spec.resolve(this.options.cacheDir, (msg) => this.log(msg));
      this.models.set(spec.id, m);
    }
    return m;
  }

  llama(): Promise<LlamaCpp> {
    this.llamaCpp ??= LlamaCpp.open();
    return this.llamaCpp;
  }

  async close(): Promise<void> {
    if (this.llamaCpp) await (await this.llamaCpp).close();
  }
}

export interface SectionResult {
  tables: Table[];
  /** Raw measurements for --json. */
  data?: unknown;
}

/** One part of the report; main.ts runs them in order. */
export interface Section {
  id: string;
  describe: string;
  /** false: runs only when named with --section. */
  defaultOn?: boolean;
  run(ctx: BenchContext): Promise<SectionResult>;
}
