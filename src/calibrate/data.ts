import fs from 'node:fs';
import path from 'node:path';
import { sharedDataDir } from '../eval/data.js';
import { UsageError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';

/** Calibration sets by name; none overlaps an evaluation set (C4 docs 0-999, WikiText-2 test, stories260k samples). */
export const CALIBRATION_SETS = ['c4-calibration', 'stories260k-calibration'] as const;

/** The default set of a model: stories260K's own calibration stories, C4 for text models. */
export function defaultCalibrationSet(modelSource: string): string {
  return /stories260k/i.test(path.basename(modelSource)) || /stories260k/i.test(path.basename(path.dirname(modelSource)))
    ? 'stories260k-calibration'
    : 'c4-calibration';
}

/**
 * Up to `samples` sequences of at most `ctx` tokens:
 * - c4-calibration: C4 validation documents 1000-1999 joined by ' ', tokenized, cut into ctx-token slices;
 * - stories260k-calibration: the 32 stories sampled from stories260K for calibration (token ids as stored);
 * - a text file: tokenized and cut the same way.
 * Text is tokenized a document at a time until there are enough tokens.
 */
export function calibrationSamples(name: string, tokenizer: Pick<Tokenizer, 'encode'>, samples: number, ctx: number): number[][] {
  const dir = sharedDataDir();
  if (name === 'stories260k-calibration') {
    const file = path.join(dir, 'stories260k/calibration.jsonl');
    return readLines(file).slice(0, samples).map((line, i) => {
      const ids = (JSON.parse(line) as { ids?: unknown }).ids;
      if (!Array.isArray(ids) || !ids.every((t) => Number.isInteger(t) && t >= 0)) throw new UsageError(`${file}: line ${i + 1} has no "ids" list`);
      return (ids as number[]).slice(0, ctx);
    });
  }
  let docs: string[];
  if (name === 'c4-calibration') {
    docs = readLines(path.join(dir, 'c4/c4_validation_2k.jsonl')).slice(1000, 2000).map((l) => (JSON.parse(l) as { text: string }).text);
  } else if (fs.existsSync(name) && fs.statSync(name).isFile()) {
    docs = [fs.readFileSync(name, 'utf8')];
  } else {
    throw new UsageError(`unknown calibration data "${name}": use ${CALIBRATION_SETS.join(', ')} or the path of a text file`);
  }
  const ids: number[] = [];
  for (const doc of docs) {
    if (ids.length >= samples * ctx) break;
    ids.push(...tokenizer.encode(ids.length ? ` ${doc}` : doc));
  }
  const out: number[][] = [];
  for (let i = 0; (i + 1) * ctx <= ids.length && out.length < samples; i++) out.push(ids.slice(i * ctx, (i + 1) * ctx));
  if (out.length === 0) throw new UsageError(`${name} has ${ids.length} tokens, fewer than one sample of ${ctx}`);
  return out;
}

function readLines(file: string): string[] {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim());
  } catch (e) {
    throw new UsageError(`cannot read ${file}: ${(e as Error).message} (the calibration data lives in ../shared/data)`);
  }
}
