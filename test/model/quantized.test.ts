import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../src/engine/model.js';
import { REF6M_DIR, REF6M_GGUF, SHARED } from '../engine/helpers.js';
import { expectSameGreedy, kvpackGreedy, llamaCpp, maxDecodeLogitDiff, maxLogitDiff } from '../engine/llama-cpp.js';

const PROMPT = 'The President of the United States said that the Congress';
/** The first 64 tokens of WikiText-2's test text. */
const TEXT = readFileSync(path.join(SHARED, 'data/wikitext2/wiki.test.raw'), 'utf8').slice(0, 1000);

// llama.cpp multiplies quantized weights by activations rounded to 8 bits; kvpack's fast way does in
// decode (its prefill chunks keep them in f32), where an activation whose f32 value differs slightly
// (other sums, other attention) can round one step apart: logits differ by about that rounding (≈0.1 on
// ref-6m, whose logits reach ±15), not by format errors (a wrong scale or nibble order moves logits by
// whole units). F32 weights agree to 3e-3.
const MAX_LOGIT_DIFF = 0.2;

const tmp = mkdtempSync(path.join(os.tmpdir(), 'kvpack-quant-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** ref-6m quantized by llama.cpp: its four reference files, and the other types made with its quantizer. */
const FILES: [string, () => string][] = [
  ...['Q4_0', 'Q8_0', 'Q4_K_M', 'Q6_K'].map((t) => [t, () => path.join(REF6M_DIR, 'quantized', `ref-6m-${t}.gguf`)] as [string, () => string]),
  ...['Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K_S', 'Q5_K_S', 'IQ4_NL', 'IQ4_XS'].map((t) => [t, () => {
    const out = path.join(tmp, `ref-6m-${t}.gguf`);
    execFileSync('python3', [path.join(SHARED, 'tools/quantize-gguf.py'), REF6M_GGUF, out, t], { stdio: 'ignore' });
    return out;
  }] as [string, () => string]),
];

describe.each(FILES)('ref-6m %s agrees with llama.cpp on the same file', (type, make) => {
  let file: string;
  let model: Model;
  beforeAll(async () => {
    file = make();
    model = await loadModel(file, { threads: 2 });
  });
  afterAll(async () => model.close());

  it('greedy 32 tokens are llama.cpp\'s (up to a near-tie); logits agree at 64 positions, in prefill and in decode (f32 KV cache)', async () => {
    const text = model.tokenizer.encode(TEXT).slice(0, 64);
    const ref = await llamaCpp(file, PROMPT, 32, text, true);
    expect(model.tokenizer.encode(PROMPT)).toEqual(ref.promptIds);
    const same = expectSameGreedy(kvpackGreedy(model, ref.promptIds, 32), ref.greedy, 2 * MAX_LOGIT_DIFF);
    const diff = maxLogitDiff(model, text, ref.logits);
    const decode = maxDecodeLogitDiff(model, text, ref.logits);
    console.log(`| ${type} | ${(model.info().weightBytes * 8 / model.info().parameters).toFixed(2)} | ${same} | ${diff.toExponential(2)} | ${decode.toExponential(2)} |`);
    expect(diff).toBeLessThan(MAX_LOGIT_DIFF);
    expect(decode).toBeLessThan(MAX_LOGIT_DIFF);
  });
});
