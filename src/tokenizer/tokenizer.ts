/** Text ↔ token ids, for whichever tokenizer travels with a model. */
export interface Tokenizer {
  readonly vocabSize: number;
  /** Beginning-of-sequence id, if the model has one. */
  readonly bos: number | undefined;
  /** Ids that end generation. */
  readonly eos: readonly number[];
  /** Whether `encode` prepends BOS when the caller does not say. */
  readonly addBosByDefault: boolean;
  encode(text: string, options?: { addBos?: boolean }): number[];
  /** Text of a sequence of ids; bytes that do not yet form a whole UTF-8 character come out as U+FFFD. */
  decode(ids: readonly number[]): string;
}
