import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REF6M_DIR, REF6M_GGUF, STORIES_BIN } from '../engine/helpers.js';
import { expectCleanFailure, kvpack } from './run.js';
import { ggufModelMetadata, llamaGgufTensorInfos, writeGgufTensors } from '../../src/dev/write.js';
import type { ModelConfig } from '../../src/model/config.js';

/** Llama-2-7B's shape (f16: 12.6 GiB of weights). */
const SEVEN_B: ModelConfig = {
  architecture: 'llama', hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128,
  vocabSize: 32000, maxContext: 4096, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'interleaved', tiedEmbeddings: false, qkvBias: false,
};

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('kvpack CLI', () => {
  it('generates greedily from stories260K', () => {
    const r = kvpack('generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '20', 'Once upon a time');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Once upon a time, there was a little girl/);
  });

  it('info counts each tensor type and the stored bits per weight of a quantized GGUF', () => {
    const file = path.join(REF6M_DIR, 'quantized', 'ref-6m-Q4_K_M.gguf');
    const r = kvpack('info', '--model', file, '--json');
    expect(r.code).toBe(0);
    const info = JSON.parse(r.stdout) as { tensorTypes: Record<string, number>; bitsPerWeight: number; parameters: number };
    // llama.cpp's Q4_K_M mix: mostly Q4_K, some Q6_K, fallbacks for rows that are not whole 256-blocks
    expect(Object.keys(info.tensorTypes)).toEqual(expect.arrayContaining(['q4_k', 'q6_k', 'f32']));
    expect(Object.values(info.tensorTypes).reduce((a, b) => a + b)).toBe(2 + 6 * 9); // embeddings, final norm, 9 per layer
    // stored bytes, so a little under the file's own size per parameter
    const fileBits = (fs.statSync(file).size * 8) / info.parameters;
    expect(info.bitsPerWeight).toBeGreaterThan(4.5);
    expect(info.bitsPerWeight).toBeLessThan(fileBits);
    expect(kvpack('info', '--model', file).stdout).toMatch(/bits\/weight\s+5\.\d\d/);
  });

  it('info reads the header only: a sparse 7B-shaped GGUF of 12.6 GiB is described, its plan printed, no weight read', async () => {
    const file = path.join(tmp, 'seven-b.gguf');
    const c = { ...SEVEN_B };
    await writeGgufTensors(file, { metadata: ggufModelMetadata(c, 'seven-b') as never }, llamaGgufTensorInfos(c, 'F16'));
    // the file holds no weights (a sparse hole reads as zeros): anything that read or hashed them would take minutes
    const r = kvpack('info', '--model', file, '--ctx', '4096', '--cache', 'int(bits=4)');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^plan\s+4096 tokens of full\+int\(bits=4\)$/m);
    expect(r.stdout).toMatch(/^parameters\s+6738\.\d\dM \(f16 6738\.\d\dM, f32 0\.27M\)$/m);
    expect(r.stdout).toMatch(/^cache\s+full\+int\(bits=4\): 4\.5 bits per value/m);
  });

  it('prints the KV bytes held against a full fp16 cache after generating', () => {
    const r = kvpack('generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '20', '--cache', 'window(sinks=2,recent=6)', 'Once upon a time');
    expect(r.code).toBe(0);
    const m = /^KV cache: ([\d.]+) (B|KiB) held \(full fp16: ([\d.]+) (B|KiB), ([\d.]+)x smaller\)$/m.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const bytes = (v: string, unit: string) => Number(v) * (unit === 'KiB' ? 1024 : 1);
    // 8 held tokens × 5 layers × 4 KV heads × (2 × 8 dims × 2 bytes + a 4-byte position)
    const held = bytes(m![1]!, m![2]!);
    expect(Math.abs(held - 8 * 5 * 4 * (2 * 8 * 2 + 4))).toBeLessThan(52); // printed to 0.1 KiB
    expect(Number(m![5])).toBeCloseTo(bytes(m![3]!, m![4]!) / held, 1);
  });

  it('stores fp16 by default: the default cache is the full fp16 cache it is measured against', () => {
    const r = kvpack('generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '20', 'Once upon a time');
    const m = /^KV cache: ([\d.]+ K?i?B) held \(full fp16: ([\d.]+ K?i?B), 1\.0x smaller\)$/m.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(m![1]).toBe(m![2]);
    const f32 = kvpack('generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '20', '--cache', 'full+fp32', 'Once upon a time');
    expect(f32.stderr).toMatch(/2\.0x larger\)$/m);
  });

  it('generate --compare scores the generated tokens with the full fp16 cache: top-1 agreement and KL', () => {
    const compare = (cache: string) => {
      const r = kvpack('generate', '--model', STORIES_BIN, '--greedy', '--max-tokens', '20', '--cache', cache, '--compare', 'Once upon a time');
      expect(r.code, r.stderr).toBe(0);
      const m = /^vs full fp16 on the same (\d+) tokens: top-1 agreement ([\d.]+)% \((\d+)\/(\d+)\), KL ([\d.e+-]+) nats\/token \(max ([\d.e+-]+)\)$/m.exec(r.stderr);
      expect(m, r.stderr).not.toBeNull();
      return { tokens: Number(m![1]), top1: Number(m![2]), kl: Number(m![5]), klMax: Number(m![6]) };
    };
    // the same cache fed the same chunks: the same logits
    expect(compare('full')).toEqual({ tokens: 20, top1: 100, kl: 0, klMax: 0 });
    // f32 differs from the fp16 reference by rounding only
    const f32 = compare('full+fp32');
    expect(f32.top1).toBe(100);
    expect(f32.klMax).toBeGreaterThan(0);
    expect(f32.kl).toBeLessThan(1e-3);
    // a window of 8 tokens loses most of the story
    const window = compare('window(sinks=2,recent=6)');
    expect(window.tokens).toBe(20);
    expect(window.kl).toBeGreaterThan(100 * f32.kl);
    expectCleanFailure(kvpack('generate', '--model', STORIES_BIN, '--compare', '--streaming', '--cache', 'window(sinks=4,recent=60)', 'hi'), '--compare', 'streaming');
  });

  it('ppl says when kvquant calibrated online on f16 rows it staged', () => {
    const r = kvpack('ppl', '--model', STORIES_BIN, '--data', 'stories260k', '--ctx', '128', '--chunks', '1', '--mode', 'decode', '--cache', 'kvquant(bits=3)');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('kvquant: no calibration file, so each layer kept its first 64 tokens as f16 rows');
    expect(kvpack('ppl', '--model', STORIES_BIN, '--data', 'stories260k', '--ctx', '128', '--chunks', '1', '--cache', 'int(bits=4)').stderr).not.toContain('calibration');
  });

  it('info names the kernel build that runs: relaxed SIMD where Node can, SIMD128 when KVPACK_SIMD says so; a wrong KVPACK_SIMD fails cleanly', () => {
    const saved = process.env.KVPACK_SIMD;
    try {
      delete process.env.KVPACK_SIMD;
      expect(kvpack('info', '--model', STORIES_BIN).stdout).toMatch(/^kernels\s+wasm, relaxed SIMD build/m);
      process.env.KVPACK_SIMD = 'simd128';
      expect(JSON.parse(kvpack('info', '--model', STORIES_BIN, '--json').stdout).kernels).toBe('simd128');
      process.env.KVPACK_SIMD = 'sse';
      expectCleanFailure(kvpack('info', '--model', STORIES_BIN), 'KVPACK_SIMD must be simd128 or relaxed, got "sse"');
    } finally {
      if (saved === undefined) delete process.env.KVPACK_SIMD;
      else process.env.KVPACK_SIMD = saved;
    }
  });

  it('--matmul exact keeps f32 activations in decode (its perplexity is chunked prefill\'s), fast rounds them to 8 bits; a wrong mode fails cleanly', () => {
    const q4km = path.join(REF6M_DIR, 'quantized', 'ref-6m-Q4_K_M.gguf');
    const ppl = (...args: string[]): number => {
      const r = kvpack('ppl', '--model', q4km, '--data', 'wikitext2', '--ctx', '64', '--chunks', '2', '--json', '--threads', '1', ...args);
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { ppl: number }).ppl;
    };
    const chunked = ppl('--mode', 'chunked');
    const exact = ppl('--mode', 'decode', '--matmul', 'exact');
    const fast = ppl('--mode', 'decode', '--matmul', 'fast');
    expect(Math.abs(exact / chunked - 1)).toBeLessThan(2e-5);
    expect(Math.abs(fast / chunked - 1)).toBeGreaterThan(1e-4); // the 8-bit activations move it
    expect(Math.abs(fast / chunked - 1)).toBeLessThan(1e-2);
    expectCleanFailure(kvpack('generate', '--model', q4km, '--matmul', 'int4', 'Hello'), '--matmul must be one of fast, exact, got "int4"');
  });

  it('prints model info and JSON perplexity', () => {
    const info = kvpack('info', '--model', STORIES_BIN);
    expect(info.code).toBe(0);
    expect(info.stdout).toMatch(/KV bytes\/token\s+1280 \(f32\)/); // 2 × 5 layers × 4 KV heads × 8 dims × 4 bytes
    const r = kvpack('ppl', '--model', STORIES_BIN, '--data', 'stories260k', '--ctx', '128', '--chunks', '2', '--json', '--mode', 'decode', '--cache', 'h2o(budget=32)');
    expect(r.code).toBe(0);
    const result = JSON.parse(r.stdout) as { chunks: number; cache: string; ppl: number; memory: { compression: number } };
    expect(result.chunks).toBe(2);
    expect(result.cache).toBe('h2o(budget=32)');
    expect(result.ppl).toBeGreaterThan(1);
    expect(result.memory.compression).toBeGreaterThan(1);
  });

  it('prints the memory plan with --ctx and stops where it does not fit', () => {
    const fits = kvpack('info', '--model', STORIES_BIN, '--ctx', '512', '--cache', 'int(bits=2)');
    expect(fits.code).toBe(0);
    expect(fits.stdout).toMatch(/plan\s+512 tokens of full\+int\(bits=2\)/);
    expect(fits.stdout).toMatch(/fits\s+yes/);
    expect(fits.stdout).toMatch(/KV bytes\/token\s+1280 \(f32\)/); // the model info follows
    // stories260K's f32 cache takes 1280 bytes per token: a billion tokens need 1.2 TiB
    const refused = kvpack('info', '--model', STORIES_BIN, '--ctx', '1000000000');
    expectCleanFailure(refused, 'the longest context that fits is');
    expect(refused.stdout).toMatch(/fits\s+no; longest context that fits: \d+ tokens/);
  });

  it('refuses a truncated model file, naming it', () => {
    const cut = path.join(tmp, 'cut.gguf');
    fs.writeFileSync(cut, fs.readFileSync(REF6M_GGUF).subarray(0, 5000));
    expectCleanFailure(kvpack('info', '--model', cut), 'cut.gguf');
  });

  it('refuses a path that is neither a file nor a repo id', () => {
    expectCleanFailure(kvpack('info', '--model', path.join(tmp, 'nothing-here')), 'nothing-here');
  });

  it('refuses a bad cache spec, listing what is allowed', () => {
    expectCleanFailure(kvpack('generate', '--model', STORIES_BIN, '--cache', 'h2o(budgt=3)', 'hi'), 'allowed: budget');
  });

  it('refuses bad options and unknown commands', () => {
    expectCleanFailure(kvpack('generate', '--model', STORIES_BIN, '--max-tokens', 'lots', 'hi'), '--max-tokens');
    expectCleanFailure(kvpack('generate', '--bogus'), 'bogus');
    expectCleanFailure(kvpack('frobnicate'), 'unknown command');
    expectCleanFailure(kvpack('ppl', '--model', STORIES_BIN, '--data', 'nosuch'), 'unknown data "nosuch"'); // without --data: wikitext2
    // a model path given without --model is refused, not silently replaced by the default model
    expectCleanFailure(kvpack('info', STORIES_BIN), 'info takes no positional arguments');
  });

  it('refuses a request longer than the context, suggesting what to do', () => {
    expectCleanFailure(kvpack('generate', '--model', STORIES_BIN, '--max-tokens', '600', 'Once'), "exceed the model's context of 512");
  });
});
