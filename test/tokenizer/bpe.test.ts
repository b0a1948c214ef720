// ref-6m's byte-level BPE (SmolLM2 pre-tokenizer) against llama.cpp, through node-llama-cpp.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Gpt2BpeTokenizer } from '../../src/tokenizer/bpe.js';
import { HfTokenizer } from '../../src/tokenizer/hf.js';
import { loadLlamaCpp, sampleTexts, shared, type LlamaCpp } from './fixtures.js';
import { ggufVocab } from './gguf-meta.js';

const GGUF = shared('models/ref-6m/ref-6m.gguf');
const JSON_FILE = shared('models/ref-6m/tokenizer.json');

function ggufBpe(): Gpt2BpeTokenizer {
  const { meta, vocab } = ggufVocab(GGUF, 'gpt2');
  return new Gpt2BpeTokenizer({
    ...vocab,
    merges: meta.get('tokenizer.ggml.merges') as string[],
    addBos: meta.get('tokenizer.ggml.add_bos_token') as boolean,
    pre: meta.get('tokenizer.ggml.pre') as string,
  });
}

describe('ref-6m byte-level BPE', () => {
  let ref: LlamaCpp;
  let bpe: Gpt2BpeTokenizer;
  let hf: HfTokenizer;
  const texts = sampleTexts();
  const reference = (text: string, special = false) => Array.from(ref.model.tokenize(text, special));

  beforeAll(async () => {
    ref = await loadLlamaCpp(GGUF);
    bpe = ggufBpe();
    hf = new HfTokenizer(readFileSync(JSON_FILE, 'utf8'), JSON_FILE, { bos: 0, eos: [0] });
  });
  afterAll(async () => {
    await ref?.dispose();
  });

  test('metadata: no BOS added, <|endoftext|> ends', () => {
    expect(bpe.vocabSize).toBe(8192);
    expect(bpe.addBosByDefault).toBe(false);
    expect(bpe.eos).toEqual([0]);
    expect(hf.vocabSize).toBe(8192);
    expect(hf.addBosByDefault).toBe(false);
    // Without hints, the HF tokenizer finds its end tokens by name.
    const bare = new HfTokenizer(readFileSync(JSON_FILE, 'utf8'), JSON_FILE);
    expect(bare.eos).toContain(0);
    expect(bare.addBosByDefault).toBe(false);
  });

  test('GGUF tokenizer encodes like llama.cpp', () => {
    for (const text of texts) expect(bpe.encode(text), JSON.stringify(text.slice(0, 80))).toEqual(reference(text));
  });

  test('HF tokenizer.json encodes like llama.cpp', () => {
    for (const text of texts) expect(hf.encode(text), JSON.stringify(text.slice(0, 80))).toEqual(reference(text));
  });

  test('a long document encodes like llama.cpp', () => {
    const big = readFileSync(shared('data/wikitext2/wiki.test.raw'), 'utf8').slice(0, 100_000);
    const want = reference(big);
    expect(bpe.encode(big)).toEqual(want);
    expect(hf.encode(big)).toEqual(want);
  });

  test('special tokens: plain text by default, ids when parsing specials (as node-llama-cpp)', () => {
    const text = 'a<|endoftext|>b <|im_start|>user\nhi<|im_end|>';
    expect(bpe.encode(text)).toEqual(reference(text, false));
    expect(bpe.encode(text, { parseSpecial: true })).toEqual(reference(text, true));
    // Hugging Face always matches added tokens.
    expect(hf.encode(text)).toEqual(reference(text, true));
  });

  test('addBos prepends BOS on request', () => {
    expect(bpe.encode('Hi', { addBos: true })).toEqual([0, ...bpe.encode('Hi')]);
    expect(hf.encode('Hi', { addBos: true })).toEqual([0, ...hf.encode('Hi')]);
    expect(bpe.encode('')).toEqual([]);
    expect(hf.encode('')).toEqual([]);
  });

  test('decode round-trips the text and agrees with llama.cpp', () => {
    for (const text of texts) {
      const ids = bpe.encode(text);
      expect(bpe.decode(ids)).toBe(text);
      expect(hf.decode(ids)).toBe(text);
      expect(bpe.decode(ids)).toBe(ref.model.detokenize(ids));
    }
    // Control tokens decode to nothing, as llama.cpp does without "special".
    expect(bpe.decode([0, ...bpe.encode('x')])).toBe('x');
    expect(hf.decode([0, ...hf.encode('x')])).toBe('x');
  });

  test('a byte split across tokens decodes to U+FFFD until whole', () => {
    const ids = bpe.encode('😀');
    expect(ids.length).toBeGreaterThan(1);
    expect(bpe.decode(ids.slice(0, -1)).endsWith('\uFFFD')).toBe(true);
    expect(hf.decode(ids.slice(0, -1)).endsWith('\uFFFD')).toBe(true);
  });

  test('out-of-range ids are rejected', () => {
    expect(() => bpe.decode([8192])).toThrow(RangeError);
    expect(() => hf.decode([-1])).toThrow(RangeError);
  });
});
