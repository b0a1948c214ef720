// llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 score, int32 byte length, bytes.
import { readFile } from 'node:fs/promises';
import { ModelFormatError } from '../errors.js';
import { SentencePieceTokenizer } from './spm.js';
import { TokenType } from './special.js';
import type { Tokenizer } from './tokenizer.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads a llama2.c tokenizer.bin holding (at least) `vocabSize` tokens; BOS 1, EOS 2, BOS added by default. */
export async function readLlama2cTokenizer(path: string, vocabSize: number): Promise<Tokenizer> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new ModelFormatError(path, `cannot be read: ${(e as Error).message}`);
  }
  return parseLlama2cTokenizer(buf, vocabSize, path);
}

export function parseLlama2cTokenizer(buf: Uint8Array, vocabSize: number, file: string): Tokenizer {
  if (!Number.isInteger(vocabSize) || vocabSize < 3) {
    throw new ModelFormatError(file, `vocabulary size ${vocabSize} is too small for a llama2.c tokenizer (needs <unk>, <s>, </s>)`);
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const truncated = (what: string, at: number) =>
    new ModelFormatError(file, `is truncated or corrupt: ${what} at byte ${at} runs past the end (${buf.byteLength} bytes); expected ${vocabSize} tokens`);
  if (buf.byteLength < 4) throw truncated('the header', 0);
  const maxLen = view.getInt32(0, true);
  if (maxLen <= 0) throw new ModelFormatError(file, `is not a llama2.c tokenizer: max_token_length is ${maxLen}`);
  const tokens: string[] = new Array(vocabSize);
  const scores = new Float32Array(vocabSize);
  const types: number[] = new Array(vocabSize);
  let off = 4;
  for (let id = 0; id < vocabSize; id++) {
    if (off + 8 > buf.byteLength) throw truncated(`token ${id}`, off);
    scores[id] = view.getFloat32(off, true);
    const len = view.getInt32(off + 4, true);
    off += 8;
    // Bound by what is left, so a corrupt length never drives a large allocation.
    if (len < 0 || len > buf.byteLength - off) throw truncated(`token ${id} (length ${len})`, off - 4);
    let text: string;
    try {
      text = utf8.decode(buf.subarray(off, off + len));
    } catch {
      throw new ModelFormatError(file, `token ${id} at byte ${off} is not valid UTF-8`);
    }
    off += len;
    // llama2.c's exporter wrote "▁" as a space and BOS/EOS as "\n<s>\n", "\n</s>\n"; undo both so the
    // vocabulary reads like the GGUF one.
    if (id === 1 || id === 2) {
      tokens[id] = text.trim();
      types[id] = TokenType.Control;
    } else if (id === 0) {
      tokens[id] = text;
      types[id] = TokenType.Unknown;
    } else if (/^<0x[0-9A-Fa-f]{2}>$/.test(text)) {
      tokens[id] = text;
      types[id] = TokenType.Byte;
    } else {
      tokens[id] = text.replaceAll(' ', '\u2581');
      types[id] = TokenType.Normal;
    }
  }
  return new SentencePieceTokenizer({ tokens, scores, types, bos: 1, eos: [2], addBos: true, file });
}
