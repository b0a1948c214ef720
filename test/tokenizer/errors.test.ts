// Bad tokenizer files fail with ModelFormatError naming the file.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { ModelFormatError } from '../../src/errors.js';
import { Gpt2BpeTokenizer } from '../../src/tokenizer/bpe.js';
import { HfTokenizer } from '../../src/tokenizer/hf.js';
import { readLlama2cTokenizer } from '../../src/tokenizer/llama2c.js';
import { SentencePieceTokenizer } from '../../src/tokenizer/spm.js';
import { shared } from './fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kvpack-tok-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function expectFormatError(fn: () => unknown, file: string): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ModelFormatError);
  expect((err as Error).message).toContain(file);
}

async function expectFormatErrorAsync(p: Promise<unknown>, file: string): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelFormatError);
  expect((err as Error).message).toContain(file);
}

describe('HfTokenizer', () => {
  const file = 'bad/tokenizer.json';
  test('invalid JSON', () => {
    const good = readFileSync(shared('models/ref-6m/tokenizer.json'), 'utf8');
    expectFormatError(() => new HfTokenizer(good.slice(0, 5000), file), file);
    expectFormatError(() => new HfTokenizer('', file), file);
  });
  test('not a tokenizer, or a model type the library does not run', () => {
    expectFormatError(() => new HfTokenizer('[1,2,3]', file), file);
    expectFormatError(() => new HfTokenizer('{"version":"1.0"}', file), file);
    const alien = { model: { type: 'Mystery', vocab: { a: 0 } }, added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null };
    expectFormatError(() => new HfTokenizer(JSON.stringify(alien), file), file);
  });
  test('hinted special ids outside the vocabulary', () => {
    const good = readFileSync(shared('models/ref-6m/tokenizer.json'), 'utf8');
    expectFormatError(() => new HfTokenizer(good, file, { bos: 99999 }), file);
  });
});

describe('llama2.c tokenizer.bin', () => {
  const bin = readFileSync(shared('models/stories260K/tok512.bin'));
  test('truncated files', async () => {
    for (const n of [0, 3, 4, 10, 100, bin.length - 1]) {
      const f = path.join(dir, `tok-${n}.bin`);
      writeFileSync(f, bin.subarray(0, n));
      await expectFormatErrorAsync(readLlama2cTokenizer(f, 512), f);
    }
  });
  test('a corrupt length is bounded by the bytes left, not allocated', async () => {
    const bad = Buffer.from(bin);
    bad.writeInt32LE(0x7fffffff, 4 + 4); // token 0's length
    const f = path.join(dir, 'tok-huge.bin');
    writeFileSync(f, bad);
    await expectFormatErrorAsync(readLlama2cTokenizer(f, 512), f);
    bad.writeInt32LE(-5, 4 + 4);
    writeFileSync(f, bad);
    await expectFormatErrorAsync(readLlama2cTokenizer(f, 512), f);
  });
  test('more tokens asked for than the file holds', async () => {
    await expectFormatErrorAsync(readLlama2cTokenizer(shared('models/stories260K/tok512.bin'), 513), 'tok512.bin');
  });
  test('a missing file', async () => {
    const f = path.join(dir, 'nope.bin');
    await expectFormatErrorAsync(readLlama2cTokenizer(f, 512), f);
  });
});

describe('GGUF vocabularies', () => {
  const file = 'bad.gguf';
  test('inconsistent arrays and ids', () => {
    expectFormatError(() => new SentencePieceTokenizer({ tokens: ['a', 'b'], scores: [0], eos: [1], addBos: false, file }), file);
    expectFormatError(() => new SentencePieceTokenizer({ tokens: ['a', 'b'], scores: [0, 0], eos: [7], addBos: false, file }), file);
    expectFormatError(() => new Gpt2BpeTokenizer({ tokens: ['a', 'b'], merges: ['ab'], eos: [1], addBos: false, file }), file);
    expectFormatError(() => new Gpt2BpeTokenizer({ tokens: ['a'], merges: [], types: [1, 1], eos: [0], addBos: false, file }), file);
    expectFormatError(() => new Gpt2BpeTokenizer({ tokens: [], merges: [], eos: [], addBos: false, file }), file);
  });
  test('an unknown pre-tokenizer falls back to GPT-2 splitting', () => {
    const t = new Gpt2BpeTokenizer({ tokens: ['a', 'b', 'ab', 'Ġ'], merges: ['a b'], eos: [0], addBos: false, pre: 'no-such-pre', file });
    expect(t.encode('ab ab')).toEqual([2, 3, 2]);
  });
});
