import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

/** The evaluation sets kvpack knows by name, read from ../shared/data beside the project. */
export const DATASETS = ['wikitext2', 'c4', 'pg19'] as const;
export type DatasetName = (typeof DATASETS)[number];

/** Sets stored as token ids of one model's vocabulary, scored document by document. */
export const TOKEN_DATASETS = ['stories260k'] as const;

export function sharedDataDir(): string {
  const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  for (const base of [packageRoot, process.cwd()]) {
    const candidate = path.resolve(base, '../shared/data');
    if (fs.existsSync(candidate)) return candidate;
  }
  return path.resolve(packageRoot, '../shared/data');
}

/**
 * The text of a named set, joined the way the GPTQ/KVQuant perplexity scripts join it, or the
 * contents of a file.
 * - wikitext2: the HF dataset rows (lines of the raw test file, blank lines as '') joined by "\n\n".
 * - c4: validation documents 0-999 (held out from ref-6m's training) joined by ' '.
 * - pg19: the book as it is.
 */
export function loadEvalText(name: string): string {
  const dir = sharedDataDir();
  switch (name) {
    case 'wikitext2': {
      const raw = readData(path.join(dir, 'wikitext2/wiki.test.raw'));
      const rows = raw.split(/(?<=\n)/).map((line) => (line.trim() ? line : ''));
      return rows.join('\n\n');
    }
    case 'c4': {
      const lines = readData(path.join(dir, 'c4/c4_validation_2k.jsonl')).split('\n').filter(Boolean);
      return lines.slice(0, 1000).map((l) => (JSON.parse(l) as { text: string }).text).join(' ');
    }
    case 'pg19':
      return readData(path.join(dir, 'pg19/22424.txt'));
    default:
      if (fs.existsSync(name) && fs.statSync(name).isFile()) return readData(name);
      throw unknownData(name);
  }
}

/**
 * Evaluation tokens: a text set is one stream (tokenized once, to be cut into ctx-token chunks);
 * a token set is a list of documents, each scored as its own chunk from an empty cache.
 */
export type EvalTokens = { kind: 'stream'; ids: number[] } | { kind: 'documents'; docs: number[][] };

/** The tokens of a named set or text file; token sets (stories260k) are returned as stored, never re-tokenized. */
export function loadEvalTokens(name: string, tokenizer: Pick<Tokenizer, 'encode'>): EvalTokens {
  const docs = loadTokenDocuments(name);
  return docs ? { kind: 'documents', docs } : { kind: 'stream', ids: tokenizer.encode(loadEvalText(name)) };
}

/** The documents of a token set; undefined for text (which needs a model's tokenizer). */
export function loadTokenDocuments(name: string): number[][] | undefined {
  return name === 'stories260k' ? loadStories() : undefined;
}

/** Throws unless loadEvalTokens can read `name` (a named set or an existing file), without reading it. */
export function checkEvalData(name: string): void {
  const named: readonly string[] = [...DATASETS, ...TOKEN_DATASETS];
  if (!named.includes(name) && !(fs.existsSync(name) && fs.statSync(name).isFile())) throw unknownData(name);
}

function unknownData(name: string): UsageError {
  return new UsageError(`unknown data "${name}": use ${[...DATASETS, ...TOKEN_DATASETS].join(', ')} or the path of a text file`);
}

/** The chunk length when none is given: the model's context (a token set: its longest document, within that). */
export function defaultContext(data: string, maxContext: number): number {
  const docs = loadTokenDocuments(data);
  return docs ? Math.min(maxContext, Math.max(2, ...docs.map((d) => d.length))) : maxContext;
}

/**
 * The chunks perplexity scores: non-overlapping ctx-token slices of a stream (a partial last slice
 * is dropped, as the GPTQ scripts do), or the documents cut to ctx tokens. At most `limit` chunks.
 */
export function evalChunks(tokens: EvalTokens, ctx: number, limit?: number, name = 'data'): number[][] {
  const out: number[][] = [];
  const max = limit ?? Infinity;
  if (tokens.kind === 'stream') {
    for (let c = 0; (c + 1) * ctx <= tokens.ids.length && out.length < max; c++) out.push(tokens.ids.slice(c * ctx, (c + 1) * ctx));
    if (out.length === 0) throw new UsageError(`${name} has ${tokens.ids.length} tokens, fewer than one chunk of ${ctx}`);
  } else {
    for (const doc of tokens.docs) {
      if (out.length >= max) break;
      if (doc.length >= 2) out.push(doc.slice(0, ctx));
    }
    if (out.length === 0) throw new UsageError(`${name} has no document of 2 tokens or more`);
  }
  return out;
}

/** stories260k: stories sampled from stories260K, `ids` already starting with BOS. */
function loadStories(): number[][] {
  const file = path.join(sharedDataDir(), 'stories260k/samples.jsonl');
  const lines = readData(file).split('\n').filter((l) => l.trim());
  return lines.map((line, i) => {
    let ids: unknown;
    try {
      ids = (JSON.parse(line) as { ids?: unknown }).ids;
    } catch (e) {
      throw new UsageError(`${file}: line ${i + 1} is not JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(ids) || !ids.every((t) => Number.isInteger(t) && t >= 0)) {
      throw new UsageError(`${file}: line ${i + 1} has no "ids" list of token ids`);
    }
    return ids as number[];
  });
}

function readData(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message} (the evaluation data lives in ../shared/data)`);
  }
}
