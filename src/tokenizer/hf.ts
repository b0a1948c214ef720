// A Hugging Face tokenizer.json, run by @huggingface/tokenizers.
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { ModelFormatError } from '../errors.js';
import { checkId, checkVocab } from './special.js';
import type { Tokenizer } from './tokenizer.js';

interface AddedTokenJson {
  id: number;
  content: string;
  special?: boolean;
}

const SUPPORTED_MODELS = ['BPE', 'Unigram', 'WordPiece'];

// Used only when the caller (config.json) gives no ids.
const BOS_NAMES = ['<s>', '<|begin_of_text|>', '<|startoftext|>', '<bos>'];
const EOS_NAMES = ['</s>', '<|end_of_text|>', '<|endoftext|>', '<|eot_id|>', '<|im_end|>', '<eos>', '<|eom_id|>'];

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos: number | undefined;
  readonly eos: readonly number[];
  readonly addBosByDefault: boolean;
  private readonly tok: HfLibTokenizer;

  /**
   * `json` is the text of tokenizer.json; `file` names it in errors. Special tokens in the text (added tokens)
   * are always matched, as in Hugging Face; decode leaves special tokens out.
   */
  constructor(json: string, file: string, hints?: { bos?: number; eos?: number[] }) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(json);
    } catch (e) {
      throw new ModelFormatError(file, `is not valid JSON (${(e as Error).message})`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ModelFormatError(file, 'is not a tokenizer.json object');
    }
    const root = parsed as Record<string, unknown>;
    const model = root['model'] as { type?: unknown; vocab?: unknown } | undefined;
    if (typeof model !== 'object' || model === null || typeof model.vocab !== 'object' || model.vocab === null) {
      throw new ModelFormatError(file, 'has no "model" with a "vocab"; expected a Hugging Face tokenizer.json');
    }
    // The library guesses a model for unknown types; an explicit type it does not know is a file we cannot run.
    if (model.type !== undefined && !SUPPORTED_MODELS.includes(model.type as string)) {
      throw new ModelFormatError(
        file,
        `tokenizer model type ${JSON.stringify(model.type)} is not supported (${SUPPORTED_MODELS.join(', ')} are)`,
      );
    }
    const added: AddedTokenJson[] = Array.isArray(root['added_tokens']) ? (root['added_tokens'] as AddedTokenJson[]) : [];
    try {
      // The library wants tokenizer_config.json too; only these fields matter here. No cleanup, so decode
      // round-trips text (" ," stays " ,").
      const fixed = { added_tokens: [], ...root, pre_tokenizer: unicodeDigits(root['pre_tokenizer']) };
      this.tok = new HfLibTokenizer(fixed, { clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new ModelFormatError(
        file,
        `cannot be used as a tokenizer (model type ${JSON.stringify(model.type)}): ${(e as Error).message}`,
      );
    }

    let maxId = -1;
    const vocab = model.vocab;
    const ids: Iterable<unknown> = Array.isArray(vocab)
      ? vocab.map((_, i) => i) // Unigram: [[piece, score], ...]
      : Object.values(vocab as Record<string, unknown>);
    for (const v of ids) if (typeof v === 'number' && v > maxId) maxId = v;
    for (const t of added) if (typeof t.id === 'number' && t.id > maxId) maxId = t.id;
    this.vocabSize = maxId + 1;

    const idOfAdded = (names: string[]) =>
      names.map((n) => added.find((t) => t.content === n)?.id).filter((x): x is number => x !== undefined);
    const template = templateBos(root['post_processor']);
    this.bos = hints?.bos ?? template ?? idOfAdded(BOS_NAMES)[0];
    this.eos = hints?.eos && hints.eos.length > 0 ? [...hints.eos] : idOfAdded(EOS_NAMES);
    checkVocab(file, this.vocabSize, { bos: this.bos, eos: this.eos });
    this.addBosByDefault = template !== undefined && this.bos !== undefined;
  }

  encode(text: string, options?: { addBos?: boolean }): number[] {
    // The post-processor is not run: BOS is added here, so addBos means the same for every tokenizer.
    const ids = text.length === 0 ? [] : this.tok.encode(text, { add_special_tokens: false }).ids;
    if ((options?.addBos ?? this.addBosByDefault) && this.bos !== undefined) ids.unshift(this.bos);
    return ids;
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return '';
    for (const id of ids) checkId(id, this.vocabSize);
    return this.tok.decode([...ids], { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }
}

/** The id a TemplateProcessing post-processor puts before a single sequence, if any (Llama: BOS). */
function templateBos(pp: unknown): number | undefined {
  if (typeof pp !== 'object' || pp === null) return undefined;
  const p = pp as {
    type?: string;
    processors?: unknown[];
    single?: Array<{ SpecialToken?: { id: string } }>;
    special_tokens?: Record<string, { ids?: number[] }>;
  };
  if (p.type === 'Sequence' && Array.isArray(p.processors)) {
    for (const sub of p.processors) {
      const id = templateBos(sub);
      if (id !== undefined) return id;
    }
    return undefined;
  }
  if (p.type !== 'TemplateProcessing' || !Array.isArray(p.single)) return undefined;
  const first = p.single[0]?.SpecialToken?.id;
  return first === undefined ? undefined : p.special_tokens?.[first]?.ids?.[0];
}

/**
 * The library's Digits pre-tokenizer splits on ASCII \d only, while the Rust tokenizers (and llama.cpp) split on
 * every Unicode number (char::is_numeric: "⅔", "٣"). An equivalent Split on \p{N} restores that.
 */
function unicodeDigits(pre: unknown): unknown {
  if (typeof pre !== 'object' || pre === null) return pre;
  const p = pre as { type?: string; individual_digits?: boolean; pretokenizers?: unknown[] };
  if (p.type === 'Digits') {
    return { type: 'Split', pattern: { Regex: p.individual_digits ? '\\p{N}' : '\\p{N}+' }, behavior: 'Isolated', invert: false };
  }
  if (p.type === 'Sequence' && Array.isArray(p.pretokenizers)) return { ...p, pretokenizers: p.pretokenizers.map(unicodeDigits) };
  return pre;
}
