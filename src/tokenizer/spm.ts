// SentencePiece-style BPE as llama.cpp runs it (`tokenizer.ggml.model = llama`, and llama2.c's tokenizer.bin).
import { ModelFormatError } from '../errors.js';
import { mergePairs } from './merge.js';
import {
  buildSpecialMatcher,
  checkId,
  checkVocab,
  decodeBytes,
  partitionSpecials,
  TokenType,
  utf8Encoder,
  type SpecialMatcher,
} from './special.js';
import type { Tokenizer } from './tokenizer.js';

const SPACE_MARK = '\u2581'; // "▁", SentencePiece's visible space

export class SentencePieceTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: readonly number[];
  readonly addBosByDefault: boolean;
  private readonly idOf = new Map<string, number>();
  private readonly scores: Float32Array;
  private readonly byteIds: Int32Array; // byte value → id of its <0xNN> token, or -1
  private readonly unk: number | undefined;
  private readonly addSpacePrefix: boolean;
  private readonly specials: SpecialMatcher;
  private readonly pieces: Uint8Array[];

  constructor(o: {
    tokens: string[];
    scores: ArrayLike<number>;
    types?: number[];
    bos?: number;
    eos: number[];
    addBos: boolean;
    /** GGUF `tokenizer.ggml.add_space_prefix`; llama.cpp defaults it to true. */
    addSpacePrefix?: boolean;
    file: string;
  }) {
    const { tokens, types, file } = o;
    checkVocab(file, tokens.length, { bos: o.bos, eos: o.eos, parallel: { scores: o.scores, 'token types': types } });
    this.vocabSize = tokens.length;
    this.bos = o.bos;
    this.eos = [...o.eos];
    this.addBosByDefault = o.addBos && o.bos !== undefined;
    this.addSpacePrefix = o.addSpacePrefix ?? true;
    this.scores = Float32Array.from(o.scores);
    tokens.forEach((t, id) => this.idOf.set(t, id)); // later duplicates win, as in llama.cpp
    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      const id = this.idOf.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      if (id !== undefined) this.byteIds[b] = id;
      else if (b < 0x80 && this.idOf.has(String.fromCharCode(b))) this.byteIds[b] = this.idOf.get(String.fromCharCode(b))!;
    }
    const unkAt = types?.indexOf(TokenType.Unknown) ?? -1;
    this.unk = unkAt >= 0 ? unkAt : this.idOf.get('<unk>');
    this.specials = buildSpecialMatcher(tokens, types);
    this.pieces = tokens.map((t, id) => {
      const type = types?.[id] ?? TokenType.Normal;
      switch (type) {
        case TokenType.Control:
        case TokenType.Unknown:
        case TokenType.Unused:
          return new Uint8Array(0);
        case TokenType.UserDefined:
          return utf8Encoder.encode(t);
        case TokenType.Byte: {
          const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
          if (!m) throw new ModelFormatError(file, `byte token ${id} is "${t}", expected the form <0xNN>`);
          return Uint8Array.of(parseInt(m[1]!, 16));
        }
        default:
          return utf8Encoder.encode(t.replaceAll(SPACE_MARK, ' '));
      }
    });
  }

  /** Pass `parseSpecial: true` to turn control-token text such as "</s>" into its id (user-defined tokens are always matched). */
  encode(text: string, options?: { addBos?: boolean; parseSpecial?: boolean }): number[] {
    const out: number[] = [];
    if ((options?.addBos ?? this.addBosByDefault) && this.bos !== undefined) out.push(this.bos);
    // Like llama.cpp: text at the start or right after a special token gets the dummy-prefix space.
    let afterSpecial = true;
    for (const frag of partitionSpecials(text, this.specials, options?.parseSpecial ?? false)) {
      if (typeof frag === 'number') {
        out.push(frag);
        afterSpecial = true;
        continue;
      }
      const escaped = ((this.addSpacePrefix && afterSpecial ? ' ' : '') + frag).replaceAll(' ', SPACE_MARK);
      this.encodeRun(escaped, out);
      afterSpecial = false;
    }
    return out;
  }

  /**
   * Pieces joined, "▁" read as a space, byte tokens as raw bytes, control tokens as nothing. As in llama.cpp's
   * detokenize, the first token loses one leading space (the dummy prefix); when that first token is BOS it
   * takes the strip itself, so the text after BOS keeps its space ([BOS, "▁Once"] → " Once").
   */
  decode(ids: readonly number[]): string {
    const parts = ids.map((id) => {
      checkId(id, this.vocabSize);
      return this.pieces[id]!;
    });
    if (this.addSpacePrefix && parts.length > 0 && parts[0]![0] === 0x20) parts[0] = parts[0]!.subarray(1);
    return decodeBytes(parts);
  }

  private encodeRun(text: string, out: number[]): void {
    if (text.length === 0) return;
    // Initial symbols are code points (a surrogate pair stays together).
    const bounds: number[] = [];
    for (let i = 0; i < text.length; ) {
      bounds.push(i);
      const c = text.codePointAt(i)!;
      i += c > 0xffff ? 2 : 1;
    }
    bounds.push(text.length);
    const parts = mergePairs(text, bounds, (a, b) => {
      const id = this.idOf.get(a + b);
      return id === undefined ? undefined : this.scores[id]!;
    });
    for (const p of parts) {
      const id = this.idOf.get(p);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      // Not in the vocabulary: one <0xNN> token per UTF-8 byte.
      for (const b of utf8Encoder.encode(p)) {
        const bid = this.byteIds[b]!;
        if (bid >= 0) out.push(bid);
        else if (this.unk !== undefined) out.push(this.unk);
      }
    }
  }
}
