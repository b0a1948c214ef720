// Byte-level BPE as GGUF stores it (`tokenizer.ggml.model = gpt2`), following llama.cpp's tokenizer.
import { ModelFormatError } from '../errors.js';
import { mergePairs } from './merge.js';
import { utf8Encoder, VocabTokenizer, type VocabOptions } from './special.js';

/** GPT-2's reversible byte → printable-character map, so every byte string is a string of vocab characters. */
function byteMaps(): { toChar: string[]; toByte: Map<string, number> } {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const toChar: string[] = new Array(256);
  const kept = new Set(keep);
  let extra = 0;
  for (let b = 0; b < 256; b++) toChar[b] = String.fromCodePoint(kept.has(b) ? b : 256 + extra++);
  const toByte = new Map<string, number>();
  toChar.forEach((c, b) => toByte.set(c, b));
  return { toChar, toByte };
}
const BYTES = byteMaps();

/** A token's text as bytes: each character through the byte map, any other as its UTF-8. */
function textToBytes(t: string): Uint8Array {
  const out: number[] = [];
  for (const c of t) {
    const b = BYTES.toByte.get(c);
    if (b !== undefined) out.push(b);
    else for (const x of utf8Encoder.encode(c)) out.push(x);
  }
  return Uint8Array.from(out);
}

// llama.cpp's whitespace set (JS's \s differs: it has U+FEFF and lacks U+0085).
const WS = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const S = `[${WS}]`;
const NOT_S = `[^${WS}]`;
// llama.cpp's gpt2 regex lacks the trailing `|\s+`, but its hand-written gpt2 splitter behaves as if it had it
// (and so does HF's ByteLevel regex), so it is included here.
const GPT2 = `'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^${WS}\\p{L}\\p{N}]+|${S}+(?!${NOT_S})|${S}+`;
const CONTRACTIONS = `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`;
const llama3Like = (digits: string) =>
  `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}${digits}| ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*|${S}*[\\r\\n]+|${S}+(?!${NOT_S})|${S}+`;

/** Pre-tokenizer regexes per `tokenizer.ggml.pre`, applied in sequence as llama.cpp does. */
function preRegexes(pre: string | undefined): { patterns: string[]; ignoreMerges: boolean } {
  switch (pre) {
    case undefined:
    case 'default':
      return {
        patterns: [
          '[\\p{P}\\$\\+<=>\\^~\\|]+',
          GPT2,
          '\\p{N}+',
          '[0-9][0-9][0-9]',
        ],
        ignoreMerges: false,
      };
    case 'llama-bpe':
    case 'llama3':
      return { patterns: [llama3Like('{1,3}')], ignoreMerges: true };
    case 'qwen2':
    case 'stablelm2':
      return { patterns: [llama3Like('')], ignoreMerges: false };
    case 'smollm':
    case 'starcoder':
    case 'refact':
    case 'command-r':
    case 'codeshell':
    case 'exaone':
    case 'minerva-7b':
      return { patterns: ['\\p{N}', GPT2], ignoreMerges: false };
    case 'gpt-2':
    case 'gpt2':
    case 'mpt':
    case 'olmo':
    case 'jais':
      return { patterns: [GPT2], ignoreMerges: false };
    default:
      // llama.cpp refuses unknown pre-tokenizers; we fall back to GPT-2's regex, which is right for many of them
      // and close for the rest (ids may differ around digits, newlines and punctuation runs).
      return { patterns: [GPT2], ignoreMerges: false };
  }
}

/** Split each piece by a regex, keeping the unmatched runs between matches as pieces too. */
function splitBy(pieces: string[], re: RegExp): string[] {
  const out: string[] = [];
  for (const p of pieces) {
    let last = 0;
    for (const m of p.matchAll(re)) {
      if (m[0].length === 0) continue;
      if (m.index > last) out.push(p.slice(last, m.index));
      out.push(m[0]);
      last = m.index + m[0].length;
    }
    if (last < p.length) out.push(p.slice(last));
  }
  return out;
}

/** The words a `pre` pre-tokenizer splits text into, before byte mapping (exported for tests). */
export function pretokenize(text: string, pre?: string): string[] {
  let words = [text];
  for (const p of preRegexes(pre).patterns) words = splitBy(words, new RegExp(p, 'gu'));
  return words;
}

const WORD_CACHE_LIMIT = 50_000;

export class Gpt2BpeTokenizer extends VocabTokenizer {
  private readonly ranks = new Map<string, number>();
  private readonly regexes: RegExp[];
  private readonly ignoreMerges: boolean;
  private readonly cache = new Map<string, number[]>();

  constructor(o: VocabOptions & { merges: string[]; pre?: string }) {
    super(o, {}, textToBytes);
    o.merges.forEach((m, rank) => {
      const sp = m.indexOf(' ', 1);
      if (sp < 0) throw new ModelFormatError(o.file, `merge ${rank} ("${m}") is not two pieces separated by a space`);
      // Key on the pair, not the merged text: "a bc" and "ab c" are different merges.
      const key = `${m.slice(0, sp)} ${m.slice(sp + 1)}`;
      if (!this.ranks.has(key)) this.ranks.set(key, rank);
    });
    const pre = preRegexes(o.pre);
    this.regexes = pre.patterns.map((p) => new RegExp(p, 'gu'));
    this.ignoreMerges = pre.ignoreMerges;
  }

  protected encodeText(text: string, _afterSpecial: boolean, out: number[]): void {
    let words = [text];
    for (const re of this.regexes) words = splitBy(words, re);
    for (const w of words) for (const id of this.encodeWord(w)) out.push(id);
  }

  private encodeWord(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let mapped = '';
    for (const b of utf8Encoder.encode(word)) mapped += BYTES.toChar[b]!;
    const whole = this.ignoreMerges ? this.idOf.get(mapped) : undefined;
    let ids: number[];
    if (whole !== undefined) {
      ids = [whole];
    } else {
      // Every byte character is one UTF-16 unit, so the initial symbols are the string's units.
      const bounds = Array.from({ length: mapped.length + 1 }, (_, i) => i);
      const parts = mergePairs(mapped, bounds, (a, b) => {
        const r = this.ranks.get(`${a} ${b}`);
        return r === undefined ? undefined : -r;
      });
      ids = [];
      for (const p of parts) {
        const id = this.idOf.get(p);
        if (id !== undefined) {
          ids.push(id);
          continue;
        }
        // A piece outside the vocabulary: emit its characters that are (llama.cpp drops the rest).
        for (const c of p) {
          const cid = this.idOf.get(c);
          if (cid !== undefined) ids.push(cid);
        }
      }
    }
    if (this.cache.size >= WORD_CACHE_LIMIT) this.cache.clear();
    this.cache.set(word, ids);
    return ids;
  }
}
