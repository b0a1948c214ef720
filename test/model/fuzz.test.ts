// Seeded fuzzing of the real models' headers: every corrupted or truncated file either loads or fails
// with a KvpackError; never a RangeError/TypeError, a hang or a huge allocation.
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { KvpackError } from '../../src/errors.js';
import { ggufCheckpoint, parseGguf, readGgufInParts } from '../../src/model/gguf.js';
import { mapHfTensors, parseHfConfig } from '../../src/model/hf.js';
import { parseLlama2c } from '../../src/model/llama2c.js';
import { loadCheckpoint } from '../../src/model/load.js';
import { checkLoadedTensors, parseSafetensors } from '../../src/model/safetensors.js';
import { mulberry32, REF6M, STORIES, withTempDir } from './fixtures.js';

interface Tally {
  ok: number;
  typed: number;
  escaped: string[];
}

/** Runs one case; anything thrown that is not a KvpackError is recorded with the case's description. */
async function run(tally: Tally, what: string, fn: () => unknown): Promise<void> {
  try {
    await fn();
    tally.ok++;
  } catch (e) {
    if (e instanceof KvpackError) tally.typed++;
    else tally.escaped.push(`${what}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
}

/**
 * Mutates 1-8 random bytes of `work` inside [lo, hi), runs `fn`, then restores them, so a 26 MB file
 * is copied once rather than once per case.
 */
async function mutated(work: Buffer, rand: () => number, lo: number, hi: number, fn: (where: string) => unknown): Promise<void> {
  const n = 1 + Math.floor(rand() * 8);
  const saved: [number, number][] = [];
  for (let i = 0; i < n; i++) {
    const at = lo + Math.floor(rand() * (hi - lo));
    saved.push([at, work[at]!]);
    // Half the time a random byte; otherwise a small change or an all-ones byte, which hits counts and lengths.
    const r = rand();
    work[at] = r < 0.5 ? Math.floor(rand() * 256) : r < 0.75 ? (work[at]! + 1) & 0xff : 0xff;
  }
  try {
    await fn(`bytes ${saved.map(([at]) => at).join(',')}`);
  } finally {
    for (const [at, v] of saved.reverse()) work[at] = v;
  }
}

const CASES = 120;

describe('fuzzed headers of the shared models', () => {
  /**
   * Reads a GGUF CASES times with bytes mutated in the range `range` picks (given the offset of the tensor
   * data) and CASES / 2 times cut at the length `cut` picks, tallying how the reader reacts.
   */
  async function fuzzGguf(
    file: string, seed: number,
    range: (rand: () => number, dataOffset: number) => [number, number],
    cut: (rand: () => number, dataOffset: number, length: number) => number,
  ): Promise<Tally> {
    const work = Buffer.from(await readFile(file));
    const name = path.basename(file);
    const dataOffset = parseGguf(work, name).dataOffset;
    const rand = mulberry32(seed);
    const tally: Tally = { ok: 0, typed: 0, escaped: [] };
    for (let i = 0; i < CASES; i++) {
      const [lo, hi] = range(rand, dataOffset);
      await mutated(work, rand, lo, hi, (where) => run(tally, `mutation #${i} at ${where}`, () => ggufCheckpoint(work, name)));
    }
    for (let i = 0; i < CASES / 2; i++) {
      const len = Math.floor(cut(rand, dataOffset, work.length));
      await run(tally, `truncation at ${len}`, () => ggufCheckpoint(work.subarray(0, len), name));
    }
    return tally;
  }

  it('ref-6m.gguf: mutated metadata and tensor infos, random truncation', async () => {
    const tally = await fuzzGguf(
      path.join(REF6M, 'ref-6m.gguf'), 6,
      // The first 4 KB (header, counts, config keys, start of the vocabulary) and the tensor infos before the data.
      (rand, dataOffset) => (rand() < 0.6 ? [0, 4096] : [dataOffset - 6144, dataOffset]),
      (rand, dataOffset, length) => (rand() < 0.5 ? rand() * dataOffset : rand() * length),
    );
    expect(tally.escaped).toEqual([]);
    expect(tally.typed).toBeGreaterThan(CASES / 2);
  });

  it('stories260K.gguf: mutated header bytes, random truncation', async () => {
    const tally = await fuzzGguf(path.join(STORIES, 'stories260K.gguf'), 260, (_rand, dataOffset) => [0, dataOffset], (rand, _dataOffset, length) => rand() * length);
    expect(tally.escaped).toEqual([]);
    expect(tally.ok).toBeGreaterThan(0); // some mutations land in harmless places (token text, scores)
  });

  it('ref-6m model.safetensors: mutated JSON header, random truncation', async () => {
    const file = 'model.safetensors';
    const work = Buffer.from(await readFile(path.join(REF6M, file)));
    const { config } = parseHfConfig(JSON.parse(await readFile(path.join(REF6M, 'config.json'), 'utf8')), 'config.json');
    const load = (b: Buffer) => checkLoadedTensors({ ...config, tiedEmbeddings: true }, mapHfTensors(parseSafetensors(b, file)), file);
    const headerEnd = 8 + Number(work.readBigUInt64LE(0));
    const rand = mulberry32(8192);
    const tally: Tally = { ok: 0, typed: 0, escaped: [] };
    // Digits swapped for other digits keep the JSON valid and exercise the range and shape checks.
    const digits: number[] = [];
    for (let i = 8; i < headerEnd; i++) if (work[i]! >= 0x30 && work[i]! <= 0x39) digits.push(i);
    for (let i = 0; i < CASES; i++) {
      if (i % 2 === 0) {
        await mutated(work, rand, 0, headerEnd, (where) => run(tally, `mutation #${i} at ${where}`, () => load(work)));
      } else {
        const at = digits[Math.floor(rand() * digits.length)]!;
        const old = work[at]!;
        work[at] = 0x30 + Math.floor(rand() * 10);
        await run(tally, `digit at ${at}`, () => load(work));
        work[at] = old;
      }
    }
    for (let i = 0; i < CASES / 2; i++) {
      const len = Math.floor(rand() < 0.5 ? rand() * headerEnd : rand() * work.length);
      await run(tally, `truncation at ${len}`, () => load(work.subarray(0, len)));
    }
    expect(tally.escaped).toEqual([]);
    expect(tally.typed).toBeGreaterThan(CASES / 2);
  });

  it('stories260K.bin: random header values and truncation', async () => {
    const file = 'stories260K.bin';
    const work = Buffer.from(await readFile(path.join(STORIES, file)));
    const rand = mulberry32(512);
    const tally: Tally = { ok: 0, typed: 0, escaped: [] };
    for (let i = 0; i < CASES; i++) {
      const field = Math.floor(rand() * 7) * 4;
      const old = work.readInt32LE(field);
      const choices = [0, -1, 1, old * 2, old - 1, -old, 2 ** 31 - 1, -(2 ** 31), Math.floor(rand() * 2 ** 32) - 2 ** 31];
      work.writeInt32LE(choices[Math.floor(rand() * choices.length)]! | 0, field);
      await run(tally, `header field ${field / 4} = ${work.readInt32LE(field)}`, () => parseLlama2c(work, file));
      work.writeInt32LE(old, field);
    }
    for (let i = 0; i < CASES / 2; i++) {
      const len = Math.floor(rand() < 0.3 ? rand() * 64 : rand() * work.length);
      await run(tally, `truncation at ${len}`, () => parseLlama2c(work.subarray(0, len), file));
    }
    expect(tally.escaped).toEqual([]);
    expect(tally.typed).toBeGreaterThan(CASES / 2);
  });

  it('whole files through loadCheckpoint: corrupted stories260K .bin, tok512.bin and .gguf on disk', () =>
    withTempDir(async (dir) => {
      const rand = mulberry32(42);
      const tally: Tally = { ok: 0, typed: 0, escaped: [] };
      const bin = await readFile(path.join(STORIES, 'stories260K.bin'));
      const tok = await readFile(path.join(STORIES, 'tok512.bin'));
      const gguf = await readFile(path.join(STORIES, 'stories260K.gguf'));
      const binFile = path.join(dir, 'stories260K.bin');
      const tokFile = path.join(dir, 'tok512.bin');
      const ggufFile = path.join(dir, 'stories260K.gguf');
      await copyFile(path.join(STORIES, 'stories260K.bin'), binFile);
      for (let i = 0; i < 30; i++) {
        const t = Buffer.from(tok);
        if (rand() < 0.5) {
          for (let k = 0; k < 4; k++) t[Math.floor(rand() * t.length)] = Math.floor(rand() * 256);
          await writeFile(tokFile, t);
        } else {
          await writeFile(tokFile, t.subarray(0, Math.floor(rand() * t.length)));
        }
        await run(tally, `tok512.bin case ${i}`, () => loadCheckpoint(binFile));
      }
      await writeFile(tokFile, tok);
      for (let i = 0; i < 20; i++) {
        await writeFile(binFile, bin.subarray(0, Math.floor(rand() * bin.length)));
        await run(tally, `stories260K.bin case ${i}`, () => loadCheckpoint(binFile));
        const g = Buffer.from(gguf.subarray(0, rand() < 0.5 ? gguf.length : Math.floor(rand() * gguf.length)));
        for (let k = 0; k < 4; k++) g[Math.floor(rand() * Math.min(g.length, 16384))] = Math.floor(rand() * 256);
        await writeFile(ggufFile, g);
        await run(tally, `stories260K.gguf case ${i}`, () => loadCheckpoint(ggufFile));
      }
    expect(tally.escaped).toEqual([]);
    }));
});
