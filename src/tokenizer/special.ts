// Pieces shared by the tokenizers: token types, special-token partitioning, UTF-8 helpers, checks.
import { ModelFormatError } from '../errors.js';

/** GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type). */
export const TokenType = {
  Undefined: 0,
  Normal: 1,
  Unknown: 2,
  Control: 3,
  UserDefined: 4,
  Unused: 5,
  Byte: 6,
} as const;

/** A run of plain text, or a special token found in the text. */
export type Fragment = string | number;

/** Special tokens that can be matched in text, longest first (llama.cpp matches them in that order). */
export interface SpecialMatcher {
  /** Always matched (user-defined tokens). */
  readonly always: ReadonlyArray<readonly [string, number]>;
  /** Matched only when the caller asks to parse specials (control and unknown tokens). */
  readonly onRequest: ReadonlyArray<readonly [string, number]>;
}

export function buildSpecialMatcher(tokens: readonly string[], types: readonly number[] | undefined): SpecialMatcher {
  const always: [string, number][] = [];
  const onRequest: [string, number][] = [];
  if (types) {
    for (let id = 0; id < tokens.length; id++) {
      const t = types[id];
      const text = tokens[id];
      if (text === undefined || text.length === 0) continue;
      if (t === TokenType.UserDefined) always.push([text, id]);
      else if (t === TokenType.Control || t === TokenType.Unknown) onRequest.push([text, id]);
    }
  }
  const byLength = (a: readonly [string, number], b: readonly [string, number]) => b[0].length - a[0].length;
  return { always: always.sort(byLength), onRequest: onRequest.sort(byLength) };
}

/**
 * Split text around special tokens. Like llama.cpp's partition, each special (longest first) splits every
 * remaining text run, so a longer special wins over a shorter one inside it.
 */
export function partitionSpecials(text: string, matcher: SpecialMatcher, parseSpecial: boolean): Fragment[] {
  let frags: Fragment[] = text.length > 0 ? [text] : [];
  const lists = parseSpecial ? [matcher.always, matcher.onRequest] : [matcher.always];
  // Merge the lists by length so the order is longest first across both.
  const specials = lists.flat().sort((a, b) => b[0].length - a[0].length);
  for (const [needle, id] of specials) {
    const next: Fragment[] = [];
    let changed = false;
    for (const f of frags) {
      if (typeof f !== 'string' || f.indexOf(needle) < 0) {
        next.push(f);
        continue;
      }
      changed = true;
      let start = 0;
      for (let at = f.indexOf(needle); at >= 0; at = f.indexOf(needle, start)) {
        if (at > start) next.push(f.slice(start, at));
        next.push(id);
        start = at + needle.length;
      }
      if (start < f.length) next.push(f.slice(start));
    }
    if (changed) frags = next;
  }
  return frags;
}

export const utf8Encoder = new TextEncoder();
/** Non-fatal: bytes that do not form a whole character decode to U+FFFD, as the Tokenizer contract says. */
export const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Concatenate byte pieces and decode once, so characters split across tokens come out whole. */
export function decodeBytes(pieces: readonly Uint8Array[]): string {
  let n = 0;
  for (const p of pieces) n += p.length;
  const all = new Uint8Array(n);
  let off = 0;
  for (const p of pieces) {
    all.set(p, off);
    off += p.length;
  }
  return utf8Decoder.decode(all);
}

export function checkId(id: number, vocabSize: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new RangeError(`token id ${id} is outside the vocabulary (0..${vocabSize - 1})`);
  }
}

/** The checks every vocabulary gets: non-empty, parallel arrays of the same length, special ids inside it. */
export function checkVocab(
  file: string,
  vocabSize: number,
  o: { bos?: number | undefined; eos: readonly number[]; parallel?: Record<string, ArrayLike<unknown> | undefined> },
): void {
  if (vocabSize === 0) throw new ModelFormatError(file, 'the tokenizer has an empty vocabulary');
  for (const [name, arr] of Object.entries(o.parallel ?? {})) {
    if (arr && arr.length !== vocabSize) {
      throw new ModelFormatError(file, `tokenizer has ${vocabSize} tokens but ${arr.length} ${name}`);
    }
  }
  for (const id of [...(o.bos === undefined ? [] : [o.bos]), ...o.eos]) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new ModelFormatError(file, `special token id ${id} is outside the vocabulary of ${vocabSize}`);
    }
  }
}
