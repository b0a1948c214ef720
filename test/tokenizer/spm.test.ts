// stories260K's SentencePiece vocabulary, from the GGUF and from llama2.c's tok512.bin, against llama.cpp.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readLlama2cTokenizer } from '../../src/tokenizer/llama2c.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/spm.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { loadLlamaCpp, shared, type LlamaCpp } from './fixtures.js';
import { ggufVocab } from './gguf-meta.js';

const GGUF = shared('models/stories260K/stories260K.gguf');
const TOK_BIN = '../shared/models/stories260K/tok512.bin';

function ggufSpm(): SentencePieceTokenizer {
  const { meta, vocab } = ggufVocab(GGUF, 'llama');
  return new SentencePieceTokenizer({
    ...vocab,
    scores: meta.get('tokenizer.ggml.scores') as number[],
    addBos: true, // no tokenizer.ggml.add_bos_token key: llama.cpp's default for SPM
  });
}

const TEXTS = [
  'Once upon a time, there was a little girl named Lily.',
  'She loved to play outside in the park. One day, she saw a big, red ball.',
  '"Can I play with you?" asked Tom. "Yes!" said the dog, wagging its tail.',
  'The sun was shining and the birds were singing.\nTim went home and slept.\n\nThe end.',
  "Lily didn't want to share. She said, \"It's mine!\" They're friends again.",
  '  two leading spaces and  double  spaces  ',
  ' one leading space',
  'café 日本',
  'naïve Zürich 😀 ünïcödé ñ €100 — “quoted” 中文',
  'ALL CAPS STORY WITH NUMBERS 1234 and 3.5 apples',
  '\ttab\tseparated\r\n',
  'x',
  ' ',
  '\n',
];

describe('stories260K SentencePiece', () => {
  let ref: LlamaCpp;
  let fromGguf: SentencePieceTokenizer;
  let fromBin: Tokenizer;
  const bos = 1;
  // node-llama-cpp's tokenize never adds BOS; llama.cpp adds it in front for this model (add_bos default).
  const reference = (text: string, special = false) => [bos, ...Array.from(ref.model.tokenize(text, special))];

  beforeAll(async () => {
    ref = await loadLlamaCpp(GGUF);
    fromGguf = ggufSpm();
    fromBin = await readLlama2cTokenizer(TOK_BIN, 512);
  });
  afterAll(async () => {
    await ref?.dispose();
  });

  test('metadata', () => {
    for (const t of [fromGguf, fromBin]) {
      expect(t.vocabSize).toBe(512);
      expect(t.bos).toBe(1);
      expect(t.eos).toEqual([2]);
      expect(t.addBosByDefault).toBe(true);
    }
  });

  test('GGUF vocabulary encodes like llama.cpp (BOS first)', () => {
    for (const text of TEXTS) expect(fromGguf.encode(text), JSON.stringify(text)).toEqual(reference(text));
  });

  test('tok512.bin encodes like llama.cpp (BOS first)', () => {
    for (const text of TEXTS) expect(fromBin.encode(text), JSON.stringify(text)).toEqual(reference(text));
  });

  test('characters outside the vocabulary fall back to <0xNN> byte tokens', () => {
    const ids = fromGguf.encode('café 日本', { addBos: false });
    // "日" is E6 97 A5: byte tokens are id = byte + 3.
    expect(ids.slice(-6)).toEqual([0xe6, 0x97, 0xa5, 0xe6, 0x9c, 0xac].map((b) => b + 3));
    expect(fromGguf.decode(ids)).toBe('café 日本');
  });

  test('sampled stories encode like llama.cpp', () => {
    const lines = readFileSync(shared('data/stories260k/samples.jsonl'), 'utf8').split('\n').filter(Boolean).slice(0, 5);
    for (const line of lines) {
      const { text } = JSON.parse(line) as { text: string };
      const want = reference(text);
      expect(fromGguf.encode(text)).toEqual(want);
      expect(fromBin.encode(text)).toEqual(want);
    }
  });

  test('special tokens in text: plain by default, ids when parsing specials', () => {
    const text = 'a<s>b</s>c';
    expect(fromGguf.encode(text)).toEqual(reference(text, false));
    expect(fromGguf.encode(text, { parseSpecial: true })).toEqual(reference(text, true));
  });

  test('empty text is just BOS, or nothing', () => {
    expect(fromGguf.encode('')).toEqual([1]);
    expect(fromGguf.encode('', { addBos: false })).toEqual([]);
  });

  test('decode agrees with llama.cpp and round-trips', () => {
    for (const text of TEXTS) {
      const withBos = fromGguf.encode(text);
      const without = fromGguf.encode(text, { addBos: false });
      // llama.cpp strips the dummy-prefix space from the first token only; BOS, when first, takes that strip,
      // so text after BOS keeps its leading space.
      expect(fromGguf.decode(withBos)).toBe(ref.model.detokenize(withBos));
      expect(fromGguf.decode(without)).toBe(ref.model.detokenize(without));
      expect(fromBin.decode(withBos)).toBe(fromGguf.decode(withBos));
      expect(fromGguf.decode(without)).toBe(text);
      expect(fromGguf.decode(withBos)).toBe(' ' + text);
    }
  });

  test('greedy reference ids decode to its text', () => {
    const { ids, text } = JSON.parse(readFileSync(shared('models/stories260K/greedy_reference.json'), 'utf8')) as {
      ids: number[];
      text: string;
    };
    // The reference printed token 13 by its piece "<0x0A>"; that is the byte-fallback token for "\n", and
    // llama.cpp decodes it to a newline, so we expect "\n" where the file shows "<0x0A>". It also keeps the
    // space of "▁Once" after BOS, as llama.cpp does.
    expect(ids).toContain(13);
    const expected = text.replaceAll('<0x0A>', '\n');
    expect(fromGguf.decode(ids)).toBe(expected);
    expect(fromBin.decode(ids)).toBe(expected);
    expect(ref.model.detokenize(ids)).toBe(expected);
  });
});
