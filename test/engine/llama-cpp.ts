// llama.cpp (node-llama-cpp, CPU) on a GGUF: the reference kvpack's forward pass is compared with.
import { getLlama, LlamaLogLevel } from 'node-llama-cpp';
import type { Model } from '../../src/engine/model.js';
import { argmax } from '../../src/engine/sample.js';

export interface LlamaCppRun {
  /** llama.cpp's tokens for the prompt. */
  promptIds: number[];
  /** Greedy continuation of the prompt. */
  greedy: number[];
  /** Raw logits after each token of `text` (vocab-sized rows). */
  logits: Float32Array[];
}

/**
 * Greedy `steps` tokens after `prompt`, and the logits at every position of `text` (token ids), from
 * llama.cpp on one thread. `kvF32` asks for an f32 KV cache instead of llama.cpp's default f16.
 */
export async function llamaCpp(modelPath: string, prompt: string, steps: number, text: number[], kvF32 = false): Promise<LlamaCppRun> {
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath });
  const kv = kvF32 ? { experimentalKvCacheKeyType: 'F32' as const, experimentalKvCacheValueType: 'F32' as const } : {};
  const context = await model.createContext({ contextSize: 256, threads: 1, ...kv });
  try {
    const promptIds = [...model.tokenize(prompt)].map(Number);
    const greedy: number[] = [];
    const seq = context.getSequence();
    for await (const t of seq.evaluate(promptIds, { temperature: 0 })) {
      greedy.push(Number(t));
      if (greedy.length === steps) break;
    }
    await seq.clearHistory();
    const out = await seq.controlledEvaluate(text.map((t) => [t, { generateNext: { logits: true } }] as const));
    const logits = out.map((o) => {
      const row = new Float32Array(o!.next.logits!.size); // every token's logit
      for (const [tok, v] of o!.next.logits!) row[Number(tok)] = v;
      return row;
    });
    return { promptIds, greedy, logits };
  } finally {
    await context.dispose();
    await model.dispose();
    await llama.dispose();
  }
}

/** kvpack's greedy continuation of `promptIds`, with the margin between the top two logits at each step. */
export function kvpackGreedy(m: Model, promptIds: number[], steps: number): { tokens: number[]; margins: number[] } {
  const session = m.session();
  let logits = session.feed(promptIds);
  const tokens: number[] = [];
  const margins: number[] = [];
  while (tokens.length < steps) {
    const best = argmax(logits);
    let second = -Infinity;
    for (let v = 0; v < logits.length; v++) if (v !== best) second = Math.max(second, logits[v]!);
    tokens.push(best);
    margins.push(logits[best]! - second);
    logits = session.feed([best]);
  }
  return { tokens, margins };
}

/**
 * kvpack's greedy tokens equal llama.cpp's, except that after a near-tie (kvpack's top-2 margin below
 * `tie`, where the two engines' rounding may pick either) the rest is not compared. Returns where it stopped.
 */
export function expectSameGreedy(got: { tokens: number[]; margins: number[] }, want: number[], tie: number): number {
  for (let i = 0; i < want.length; i++) {
    if (got.tokens[i] === want[i]) continue;
    if (got.margins[i]! < tie) return i;
    throw new Error(`greedy token ${i}: kvpack ${got.tokens[i]} (margin ${got.margins[i]!.toFixed(3)}), llama.cpp ${want[i]}; kvpack ${got.tokens.join(' ')} vs llama.cpp ${want.join(' ')}`);
  }
  return want.length;
}

/** Max |Δ logit| between kvpack, decoding `text` one token at a time (the matvec kernels), and llama.cpp. */
export function maxDecodeLogitDiff(m: Model, text: number[], reference: Float32Array[]): number {
  const session = m.session();
  let worst = 0;
  for (let t = 0; t < reference.length; t++) {
    const l = session.feed([text[t]!]);
    const ref = reference[t]!;
    for (let v = 0; v < ref.length; v++) worst = Math.max(worst, Math.abs(l[v]! - ref[v]!));
  }
  return worst;
}

/** Max |Δ logit| between kvpack (scoring in chunked prefill) and llama.cpp at every position of `text`. */
export function maxLogitDiff(m: Model, text: number[], reference: Float32Array[]): number {
  let worst = 0;
  let t = 0;
  m.session().score([...text, 0], {
    onLogits: (_, l) => {
      const ref = reference[t++]!;
      for (let v = 0; v < ref.length; v++) worst = Math.max(worst, Math.abs(l[v]! - ref[v]!));
    },
  });
  return worst;
}
