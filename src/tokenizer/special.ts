// Pieces shared by the tokenizers: token types, special-token partitioning, UTF-8 helpers, checks, and
// VocabTokenizer, what the two GGUF tokenizers have in common.
import { ModelFormatError } from '../errors.js';
import type { Tokenizer } from './tokenizer.js';

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

/** A vocabulary as GGUF (and llama2.c) give it: token texts, optional token types, BOS/EOS. */
export interface VocabOptions {
  tokens: string[];
  types?: number[];
  bos?: number;
  eos: number[];
  addBos: boolean;
  file: string;
}

/**
 * What the GGUF tokenizers (byte-level BPE, SentencePiece) share: the checked vocabulary, ids by text
 * (later duplicates win, as in llama.cpp), special tokens matched in the text, and each token's bytes.
 * A subclass encodes the plain text between specials and says how a normal token's text becomes bytes.
 */
export abstract class VocabTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: readonly number[];
  readonly addBosByDefault: boolean;
  protected readonly idOf = new Map<string, number>();
  private readonly specials: SpecialMatcher;
  private readonly pieces: Uint8Array[];

  /** `parallel`: the subclass's per-token arrays, checked to have one entry per token. */
  protected constructor(o: VocabOptions, parallel: Record<string, ArrayLike<unknown>>, tokenBytes: (text: string, id: number, type: number) => Uint8Array) {
    const { tokens, types, file } = o;
    checkVocab(file, tokens.length, { bos: o.bos, eos: o.eos, parallel: { ...parallel, 'token types': types } });
    this.vocabSize = tokens.length;
    this.bos = o.bos;
    this.eos = [...o.eos];
    this.addBosByDefault = o.addBos && o.bos !== undefined;
    tokens.forEach((t, id) => this.idOf.set(t, id));
    this.specials = buildSpecialMatcher(tokens, types);
    this.pieces = tokens.map((t, id) => {
      const type = types?.[id] ?? TokenType.Normal;
      if (type === TokenType.Control || type === TokenType.Unknown || type === TokenType.Unused) return new Uint8Array(0);
      if (type === TokenType.UserDefined) return utf8Encoder.encode(t);
      return tokenBytes(t, id, type);
    });
  }

  /** Pass `parseSpecial: true` to turn control-token text such as "</s>" into its id (user-defined tokens are always matched). */
  encode(text: string, options?: { addBos?: boolean; parseSpecial?: boolean }): number[] {
    const out: number[] = [];
    if ((options?.addBos ?? this.addBosByDefault) && this.bos !== undefined) out.push(this.bos);
    let afterSpecial = true;
    for (const frag of partitionSpecials(text, this.specials, options?.parseSpecial ?? false)) {
      if (typeof frag === 'number') {
        out.push(frag);
        afterSpecial = true;
        continue;
      }
      this.encodeText(frag, afterSpecial, out);
      afterSpecial = false;
    }
    return out;
  }

  /** Appends the ids of a run of plain text; `afterSpecial`: it starts the text or follows a special token. */
  protected abstract encodeText(text: string, afterSpecial: boolean, out: number[]): void;

  decode(ids: readonly number[]): string {
    return decodeBytes(this.piecesOf(ids));
  }

  /** Each id's bytes (checked against the vocabulary). */
  protected piecesOf(ids: readonly number[]): Uint8Array[] {
    return ids.map((id) => {
      checkId(id, this.vocabSize);
      return this.pieces[id]!;
    });
  }
}
