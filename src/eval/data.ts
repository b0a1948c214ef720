import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';

/** The evaluation sets kvpack knows by name, read from ../shared/data beside the project. */
export const DATASETS = ['wikitext2', 'c4', 'pg19'] as const;
export type DatasetName = (typeof DATASETS)[number];

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
      throw new UsageError(`unknown data "${name}": use ${DATASETS.join(', ')} or the path of a text file`);
  }
}

function readData(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message} (the evaluation data lives in ../shared/data)`);
  }
}
