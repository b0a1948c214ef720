// SentencePiece-style BPE as llama.cpp runs it (`tokenizer.ggml.model = llama`, and llama2.c's tokenizer.bin).
import { ModelFormatError } from '../errors.js';
import { mergePairs } from './merge.js';
import { decodeBytes, TokenType, utf8Encoder, VocabTokenizer, type VocabOptions } from './special.js';

const SPACE_MARK = '\u2581'; // "▁", SentencePiece's visible space

/** A normal token's text as bytes ("▁" as a space); a byte token <0xNN> as its byte. */
function tokenBytes(file: string): (t: string, id: number, type: number) => Uint8Array {
  return (t, id, type) => {
    if (type !== TokenType.Byte) return utf8Encoder.encode(t.replaceAll(SPACE_MARK, ' '));
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(t);
    if (!m) throw new ModelFormatError(file, `byte token ${id} is "${t}", expected the form <0xNN>`);
    return Uint8Array.of(parseInt(m[1]!, 16));
  };
}

export class SentencePieceTokenizer extends VocabTokenizer {
  private readonly scores: Float32Array;
  private readonly byteIds: Int32Array; // byte value → id of its <0xNN> token, or -1
  private readonly unk: number | undefined;
  private readonly addSpacePrefix: boolean;

  constructor(
    o: VocabOptions & {
      scores: ArrayLike<number>;
      /** GGUF `tokenizer.ggml.add_space_prefix`; llama.cpp defaults it to true. */
      addSpacePrefix?: boolean;
    },
  ) {
    super(o, { scores: o.scores }, tokenBytes(o.file));
    this.addSpacePrefix = o.addSpacePrefix ?? true;
    this.scores = Float32Array.from(o.scores);
    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) {
      const id = this.idOf.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      if (id !== undefined) this.byteIds[b] = id;
      else if (b < 0x80 && this.idOf.has(String.fromCharCode(b))) this.byteIds[b] = this.idOf.get(String.fromCharCode(b))!;
    }
    const unkAt = o.types?.indexOf(TokenType.Unknown) ?? -1;
    this.unk = unkAt >= 0 ? unkAt : this.idOf.get('<unk>');
  }

  /** Like llama.cpp: text at the start or right after a special token gets the dummy-prefix space. */
  protected encodeText(text: string, afterSpecial: boolean, out: number[]): void {
    this.encodeRun(((this.addSpacePrefix && afterSpecial ? ' ' : '') + text).replaceAll(' ', SPACE_MARK), out);
  }

  /**
   * Pieces joined, "▁" read as a space, byte tokens as raw bytes, control tokens as nothing. As in llama.cpp's
   * detokenize, the first token loses one leading space (the dummy prefix); when that first token is BOS it
   * takes the strip itself, so the text after BOS keeps its space ([BOS, "▁Once"] → " Once").
   */
  override decode(ids: readonly number[]): string {
    const parts = this.piecesOf(ids);
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
