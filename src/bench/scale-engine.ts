/**
 * One engine's load and decode of a large model, run as its own process by the scale section, so
 * that each engine starts with the machine's memory free and its peak RSS is its own.
 * Usage: node scale-engine.js kvpack|llama.cpp FILE THREADS DECODE_TOKENS FLASH(on|off|auto) VOCAB
 * Prints one JSON line: { loadSeconds, tokS, peakRssGiB, memories }.
 */
import { loadModel } from '../engine/model.js';
import { LlamaCpp, LlamaCppEngine } from './engines.js';
import { decodeRate, type EngineRun } from './scale.js';
import { promptTokens } from './speed.js';

const PROMPT_TOKENS = 16;

async function kvpackRun(file: string, threads: number, decodeTokens: number): Promise<Omit<EngineRun, 'peakRssGiB'>> {
  const t0 = performance.now();
  const model = await loadModel(file, { threads, context: 256 });
  const loadSeconds = (performance.now() - t0) / 1000;
  try {
    const session = model.session({ cache: 'full+fp16', chunkSize: PROMPT_TOKENS });
    const tokS = decodeRate(session, promptTokens(PROMPT_TOKENS, 17, model.config.vocabSize), decodeTokens);
    session.dispose();
    return { loadSeconds, tokS, memories: model.weights.groups.count };
  } finally {
    await model.close();
  }
}

async function llamaCppRun(file: string, threads: number, decodeTokens: number, flash: boolean | 'auto', vocab: number): Promise<Omit<EngineRun, 'peakRssGiB'>> {
  const llama = await LlamaCpp.open();
  try {
    const t0 = performance.now();
    const lm = await llama.loadModel(file);
    const loadSeconds = (performance.now() - t0) / 1000;
    try {
      const engine = await LlamaCppEngine.open(lm, { threads, contextSize: 256, batchSize: PROMPT_TOKENS, flashAttention: flash });
      const prompt = promptTokens(PROMPT_TOKENS, 17, vocab);
      const ms = await engine.decode(prompt, decodeTokens);
      await engine.close();
      return { loadSeconds, tokS: (decodeTokens * 1000) / ms, memories: 1 };
    } finally {
      await lm.dispose();
    }
  } finally {
    await llama.close();
  }
}

const [engine, file, threads, tokens, flash, vocab] = process.argv.slice(2);
const run =
  engine === 'kvpack'
    ? kvpackRun(file!, Number(threads), Number(tokens))
    : llamaCppRun(file!, Number(threads), Number(tokens), flash === 'auto' ? 'auto' : flash === 'on', Number(vocab));
run.then(
  (r) => {
    // maxRSS is in KiB: the process's peak resident set, weights and (for llama.cpp) mapped file pages read
    const result: EngineRun = { ...r, peakRssGiB: (process.resourceUsage().maxRSS * 1024) / 2 ** 30 };
    process.stdout.write(JSON.stringify(result) + '\n');
    process.exit(0);
  },
  (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
