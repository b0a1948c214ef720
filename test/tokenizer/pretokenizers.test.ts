// The GGUF BPE pre-tokenizers (llama.cpp's regexes) against Hugging Face's own pre-tokenizer configs for the same
// models, run by @huggingface/tokenizers on SmolLM2's real 49k vocabulary. No llama.cpp file exists here for
// these variants, so this checks our regexes against an independent implementation.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { SplitPreTokenizer } from '@huggingface/tokenizers';
import { Gpt2BpeTokenizer, pretokenize } from '../../src/tokenizer/bpe.js';
import { HfTokenizer } from '../../src/tokenizer/hf.js';
import { sampleTexts, shared } from './fixtures.js';

const FILE = shared('models/smollm2-135m/tokenizer.json');

interface TokJson {
  model: { vocab: Record<string, number>; merges: (string | [string, string])[]; ignore_merges?: boolean };
  added_tokens: { id: number; content: string; special: boolean }[];
  pre_tokenizer: unknown;
}

function ggufStyle(j: TokJson, pre: string): Gpt2BpeTokenizer {
  const tokens: string[] = [];
  const types: number[] = [];
  for (const [t, id] of Object.entries(j.model.vocab)) {
    tokens[id] = t;
    types[id] = 1;
  }
  for (const a of j.added_tokens) {
    tokens[a.id] = a.content;
    types[a.id] = a.special ? 3 : 4;
  }
  const merges = j.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
  return new Gpt2BpeTokenizer({ tokens, merges, types, eos: [0], addBos: false, pre, file: FILE });
}

const byteLevel = (useRegex: boolean) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
const split = (regex: string) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });
// The regexes as those models' tokenizer.json files write them.
const LLAMA3 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2 =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

const VARIANTS: { pre: string; hfPre: unknown; ignoreMerges?: boolean }[] = [
  { pre: 'smollm', hfPre: { type: 'Sequence', pretokenizers: [{ type: 'Digits', individual_digits: true }, byteLevel(true)] } },
  { pre: 'gpt2', hfPre: byteLevel(true) },
  { pre: 'llama-bpe', hfPre: { type: 'Sequence', pretokenizers: [split(LLAMA3), byteLevel(false)] }, ignoreMerges: true },
  { pre: 'qwen2', hfPre: { type: 'Sequence', pretokenizers: [split(QWEN2), byteLevel(false)] } },
];

describe('BPE pre-tokenizers agree with Hugging Face on SmolLM2 vocabulary', () => {
  const base = JSON.parse(readFileSync(FILE, 'utf8')) as TokJson;
  const texts = [
    ...sampleTexts(),
    "CAPS DON'T WON'T I'M YOU'LL WE'D 'S 'T",
    'numbers 1 12 123 1234 12345 123456 and 3.14 and x2y3',
    'line\n\n\nbreaks \r\n\r\n with   spaces \n  \n\t\n end',
    '!!!\n\n???\r\n...  ---\nok',
  ];
  for (const v of VARIANTS) {
    test(v.pre, () => {
      const j = { ...base, pre_tokenizer: v.hfPre, model: { ...base.model, ignore_merges: v.ignoreMerges ?? false } };
      const hf = new HfTokenizer(JSON.stringify(j), FILE);
      const ours = ggufStyle(base, v.pre);
      for (const text of texts) {
        expect(ours.encode(text), `${v.pre}: ${JSON.stringify(text.slice(0, 80))}`).toEqual(hf.encode(text));
      }
    });
  }

  test('the variants really split differently', () => {
    // SmolLM2 has no multi-digit tokens, so digit rules cannot show here; newline and punctuation rules do.
    const text = 'x (hello\n\n!!\n';
    expect(ggufStyle(base, 'llama-bpe').encode(text)).not.toEqual(ggufStyle(base, 'smollm').encode(text));
  });

  test('llama3 and qwen2 regexes split like Hugging Face, digit groups included', () => {
    for (const [pre, regex] of [['llama3', LLAMA3], ['qwen2', QWEN2]] as const) {
      const hfSplit = new SplitPreTokenizer({ pattern: { Regex: regex }, behavior: 'Isolated', invert: false });
      for (const text of texts) expect(pretokenize(text, pre), `${pre}: ${JSON.stringify(text.slice(0, 60))}`).toEqual(hfSplit.pre_tokenize(text));
    }
    expect(pretokenize('a 1234567', 'llama3')).toEqual(['a', ' ', '123', '456', '7']);
    expect(pretokenize('a 1234567', 'qwen2')).toEqual(['a', ' ', '1', '2', '3', '4', '5', '6', '7']);
  });
});
