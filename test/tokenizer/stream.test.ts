import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { HfTokenizer } from '../../src/tokenizer/hf.js';
import { readLlama2cTokenizer } from '../../src/tokenizer/llama2c.js';
import { TextStream } from '../../src/tokenizer/stream.js';
import type { Tokenizer } from '../../src/tokenizer/tokenizer.js';
import { shared } from './fixtures.js';

const HF_JSON = shared('models/ref-6m/tokenizer.json');
const TEXT = 'Hi! café 日本語 😀👍🏽 naïve “quotes” — 👨‍👩‍👧 done.\nNext line: 42 ⅔ €.';

function streamAll(tok: Tokenizer, ids: readonly number[]): string[] {
  const s = new TextStream(tok);
  const chunks = ids.map((id) => s.push(id));
  chunks.push(s.flush());
  return chunks;
}

async function tokenizers(): Promise<[string, Tokenizer][]> {
  return [
    ['byte-level BPE (HF)', new HfTokenizer(readFileSync(HF_JSON, 'utf8'), HF_JSON)],
    ['SentencePiece with byte fallback', await readLlama2cTokenizer(shared('models/stories260K/tok512.bin'), 512)],
  ];
}

describe('TextStream', () => {
  test('pushing ids one by one yields decode(all), never a broken character', async () => {
    for (const [name, tok] of await tokenizers()) {
      for (const text of [TEXT, ' leading space', '\n\n', 'x']) {
        const ids = tok.encode(text);
        const chunks = streamAll(tok, ids);
        expect(chunks.join(''), name).toBe(tok.decode(ids));
        for (const c of chunks) expect(c.includes('\uFFFD'), `${name}: ${JSON.stringify(c)}`).toBe(false);
      }
    }
  });

  test('a character split across byte tokens is held back until whole', async () => {
    const [, spm] = (await tokenizers())[1]!;
    const ids = spm.encode('日', { addBos: false }); // "▁" then three byte tokens
    expect(ids.length).toBe(4);
    const s = new TextStream(spm);
    expect(s.push(ids[0]!)).toBe('');
    expect(s.push(ids[1]!)).toBe('');
    expect(s.push(ids[2]!)).toBe('');
    expect(s.push(ids[3]!)).toBe('日');
    expect(s.flush()).toBe('');
  });

  test('flush gives what is held back, as U+FFFD when incomplete', async () => {
    const [, spm] = (await tokenizers())[1]!;
    const s = new TextStream(spm);
    expect(s.push(spm.encode('a', { addBos: false })[0]!)).toBe('a');
    expect(s.push(0xe6 + 3)).toBe('');
    expect(s.flush()).toBe('\uFFFD');
  });

  test('long generations decode only a short window per token', async () => {
    const [, spm] = (await tokenizers())[1]!;
    const story = readFileSync(shared('data/stories260k/samples.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .slice(0, 10)
      .flatMap((l) => (JSON.parse(l) as { ids: number[] }).ids);
    let longest = 0;
    const counting: Tokenizer = {
      vocabSize: spm.vocabSize,
      bos: spm.bos,
      eos: spm.eos,
      addBosByDefault: spm.addBosByDefault,
      encode: (t, o) => spm.encode(t, o),
      decode: (ids) => {
        longest = Math.max(longest, ids.length);
        return spm.decode(ids);
      },
    };
    expect(story.length).toBeGreaterThan(3000);
    expect(streamAll(counting, story).join('')).toBe(spm.decode(story));
    expect(longest).toBeLessThan(10);
  });
});
