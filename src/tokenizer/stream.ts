// Incremental detokenization for printing tokens as they are generated.
import type { Tokenizer } from './tokenizer.js';

const REPLACEMENT = '\uFFFD';

/**
 * Feeds ids one at a time and returns only the new text. It decodes a short window of ids — from the last point
 * where the text was whole — twice (with and without the newest ids) and emits the difference, so the cost per
 * token stays small however long the generation, and decoders that treat the first token specially (SentencePiece's
 * leading space) see the same first token in both decodes. While the text ends in U+FFFD (an incomplete UTF-8
 * character split across byte tokens) nothing is emitted; flush() gives whatever is held back.
 */
export class TextStream {
  private readonly ids: number[] = [];
  /** Start of the decode window. */
  private prefixStart = 0;
  /** End of the ids whose text has been emitted. */
  private emittedEnd = 0;

  /**
   * `context`: ids already shown (the end of the prompt), so that the first new token decodes as it
   * would in running text (SentencePiece drops the leading space of a decode's first word).
   */
  constructor(private readonly tokenizer: Tokenizer, context: readonly number[] = []) {
    this.ids.push(...context);
    this.emittedEnd = context.length;
  }

  push(id: number): string {
    this.ids.push(id);
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixStart, this.emittedEnd));
    const full = this.tokenizer.decode(this.ids.slice(this.prefixStart));
    if (full.endsWith(REPLACEMENT) || full.length < prefix.length || !full.startsWith(prefix)) return '';
    this.prefixStart = this.emittedEnd;
    this.emittedEnd = this.ids.length;
    this.compact();
    return full.slice(prefix.length);
  }

  /** The text still held back (an incomplete character comes out as U+FFFD). */
  flush(): string {
    if (this.emittedEnd === this.ids.length) return '';
    const prefix = this.tokenizer.decode(this.ids.slice(this.prefixStart, this.emittedEnd));
    const full = this.tokenizer.decode(this.ids.slice(this.prefixStart));
    this.prefixStart = this.emittedEnd;
    this.emittedEnd = this.ids.length;
    this.compact();
    return full.startsWith(prefix) ? full.slice(prefix.length) : full;
  }

  /** Drop ids before the window so memory stays bounded too. */
  private compact(): void {
    if (this.prefixStart > 1024) {
      this.ids.splice(0, this.prefixStart);
      this.emittedEnd -= this.prefixStart;
      this.prefixStart = 0;
    }
  }
}

/**
 * Tokens' text as each reads after `previous` in running text: a decode of a token alone would lose
 * its leading space (SentencePiece's dummy prefix). A byte token that is part of a character reads as
 * U+FFFD.
 */
export function textAfter(tokenizer: Tokenizer, previous: number | undefined): (id: number) => string {
  if (previous === undefined) return (id) => tokenizer.decode([id]);
  const before = tokenizer.decode([previous]);
  return (id) => {
    const both = tokenizer.decode([previous, id]);
    return both.startsWith(before) ? both.slice(before.length) : tokenizer.decode([id]);
  };
}
