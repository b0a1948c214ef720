import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import { loadModel, type Model } from '../engine/model.js';
import type { Session } from '../engine/session.js';

/**
 * The two engines behind one interface, so every measurement is taken the same way:
 * wall-clock (performance.now) around exactly the work being compared, same token ids, same threads.
 */
export interface Engine {
  readonly name: string;
  /** Milliseconds to run `tokens` as one prompt into an empty cache. */
  prefill(tokens: readonly number[], chunkSize: number): Promise<number>;
  /**
   * Milliseconds to generate `n` tokens greedily after `prompt`: all but the prompt's last token are
   * fed untimed; the timed part is n single-token forward passes (the prompt's last token, then
   * n - 1 generated ones), each followed by picking the next token from the logits.
   */
  decode(prompt: readonly number[], n: number): Promise<number>;
  close(): Promise<void>;
}

export interface KvpackEngineOptions {
  threads: number;
  /** Cache spec for sessions (llama.cpp's default cache is f16). */
  cache: string;
}

export class KvpackEngine implements Engine {
  readonly name = 'kvpack';
  private readonly sessions = new Map<number, Session>();

  private constructor(readonly model: Model, private readonly options: KvpackEngineOptions) {}

  static async open(file: string, options: KvpackEngineOptions): Promise<KvpackEngine> {
    return new KvpackEngine(await loadModel(file, { threads: options.threads }), options);
  }

  /** One session per chunk size: its scratch memory is sized by the chunk. */
  private session(chunkSize: number): Session {
    let s = this.sessions.get(chunkSize);
    if (!s) {
      s = this.model.session({ cache: this.options.cache, chunkSize });
      this.sessions.set(chunkSize, s);
    }
    s.reset();
    return s;
  }

  /** `timing` is told when the timed part starts (true) and ends (false), for profilers. */
  async prefill(tokens: readonly number[], chunkSize: number, timing?: (on: boolean) => void): Promise<number> {
    const s = this.session(chunkSize);
    timing?.(true);
    const t0 = performance.now();
    s.feed(tokens);
    const ms = performance.now() - t0;
    timing?.(false);
    return ms;
  }

  /** KV bytes the cache held at the end of the last decode. */
  kvBytesAfterDecode = 0;

  async decode(prompt: readonly number[], n: number, timing?: (on: boolean) => void): Promise<number> {
    const s = this.session(64);
    if (prompt.length > 1) s.feed(prompt.slice(0, -1));
    timing?.(true);
    const t0 = performance.now();
    let logits = s.feed([prompt[prompt.length - 1]!]);
    for (let i = 1; i <= n; i++) {
      const next = argmax(logits);
      if (i < n) logits = s.feed([next]);
    }
    const ms = performance.now() - t0;
    timing?.(false);
    this.kvBytesAfterDecode = s.cache.bytes();
    return ms;
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) s.dispose();
    this.sessions.clear();
    await this.model.close();
  }
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

export interface LlamaCppContextOptions {
  threads: number;
  contextSize: number;
  batchSize: number;
  flashAttention: boolean | 'auto';
}

/** node-llama-cpp's runtime, loaded once: CPU only, prebuilt binary, exact thread counts (maxThreads 0). */
export class LlamaCpp {
  private constructor(readonly llama: Llama, readonly version: string) {}

  static async open(): Promise<LlamaCpp> {
    // Imported lazily: it is a dev dependency, and only the bench needs it.
    const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, maxThreads: 0 });
    return new LlamaCpp(llama, llama.llamaCppRelease.release);
  }

  async loadModel(file: string): Promise<LlamaModel> {
    return this.llama.loadModel({ modelPath: file, gpuLayers: 0 });
  }

  async close(): Promise<void> {
    await this.llama.dispose();
  }
}

export class LlamaCppEngine implements Engine {
  readonly name = 'llama.cpp';

  private constructor(private readonly context: LlamaContext, private readonly seq: LlamaContextSequence) {}

  static async open(model: LlamaModel, options: LlamaCppContextOptions): Promise<LlamaCppEngine> {
    const context = await model.createContext({
      contextSize: options.contextSize,
      batchSize: options.batchSize,
      threads: options.threads,
      flashAttention: options.flashAttention,
      sequences: 1,
    });
    if (context.currentThreads !== options.threads) {
      throw new Error(`llama.cpp context runs ${context.currentThreads} threads, asked for ${options.threads}`);
    }
    return new LlamaCppEngine(context, context.getSequence());
  }

  /** As configured; node-llama-cpp does not say what 'auto' resolved to. */
  get flashAttention(): boolean | 'auto' {
    return this.context.flashAttention;
  }

  async prefill(tokens: readonly number[]): Promise<number> {
    await this.seq.clearHistory();
    const t0 = performance.now();
    await this.seq.evaluateWithoutGeneratingNewTokens(tokens as Token[]);
    return performance.now() - t0;
  }

  async decode(prompt: readonly number[], n: number): Promise<number> {
    await this.seq.clearHistory();
    if (prompt.length > 1) await this.seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, -1) as Token[]);
    let produced = 0;
    const t0 = performance.now();
    // Greedy (temperature 0); EOG tokens are yielded rather than ending generation, so every run makes n tokens.
    for await (const _ of this.seq.evaluate([prompt[prompt.length - 1]!] as Token[], { temperature: 0, yieldEogToken: true })) {
      if (++produced >= n) break;
    }
    const ms = performance.now() - t0;
    if (produced !== n) throw new Error(`llama.cpp generated ${produced} tokens, expected ${n}`);
    return ms;
  }

  async close(): Promise<void> {
    await this.context.dispose();
  }
}
