import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { KvpackError, ModelFormatError, UnsupportedModelError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { checkTensors } from './checkpoint.js';
import type { ModelConfig } from './config.js';
import type { DType, RawTensor } from './tensor.js';
import { own } from '../util/schema.js';

/**
 * safetensors reader: an 8-byte little-endian header length, a JSON header mapping tensor names to
 * `{dtype, shape, data_offsets}`, then the data; offsets are relative to the first byte after the header.
 * Tensors are `subarray` views of the file's buffer, never copies; files over 2 GiB (one Buffer's
 * limit for fs.readFile) are read tensor by tensor instead.
 *
 * This module also holds the small file helpers the other loaders share (readModelFile, readJsonFile,
 * buildTokenizer); they live here because the loaders already import this module.
 */

/** fs.readFile reads at most 2 GiB - 1 into one Buffer; larger files are read tensor by tensor. */
export const MAX_WHOLE_FILE_BYTES = 2 ** 31 - 1;
/** fs reads move at most 2 GiB - 1 per call; ranges are read in chunks this size. */
const READ_CHUNK = 2 ** 30;

/** The size of a regular file, turning fs errors into messages that name the file. */
export async function modelFileSize(file: string): Promise<number> {
  try {
    const st = await fsp.stat(file);
    if (!st.isFile()) throw new ModelFormatError(file, 'is not a regular file');
    return st.size;
  } catch (e) {
    throw fsError(e, file);
  }
}

/** Reads a whole model file (up to 2 GiB) into one Buffer. */
export async function readModelFile(file: string): Promise<Buffer> {
  const size = await modelFileSize(file);
  if (size > MAX_WHOLE_FILE_BYTES) {
    throw new UnsupportedModelError(file, `file is ${(size / 2 ** 30).toFixed(1)} GiB; this kind of file is read whole, up to 2 GiB`);
  }
  try {
    return await fsp.readFile(file);
  } catch (e) {
    throw fsError(e, file);
  }
}

/**
 * Reads byte ranges [begin, end) of a file into one Buffer each: how files too large for one Buffer
 * are loaded (each tensor gets its own allocation; nothing is read twice).
 */
export async function readFileRanges(file: string, ranges: readonly (readonly [number, number])[]): Promise<Buffer[]> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(file, 'r');
    const out: Buffer[] = [];
    for (const [begin, end] of ranges) {
      const buf = Buffer.allocUnsafe(end - begin);
      for (let done = 0; done < buf.length; ) {
        const { bytesRead } = await fh.read(buf, done, Math.min(READ_CHUNK, buf.length - done), begin + done);
        if (bytesRead === 0) throw new ModelFormatError(file, `file ended at byte ${begin + done} while reading [${begin}, ${end}): changed while loading?`);
        done += bytesRead;
      }
      out.push(buf);
    }
    return out;
  } catch (e) {
    throw fsError(e, file);
  } finally {
    await fh?.close();
  }
}

/**
 * Bytes [begin, end) of a file, read now (a tensor read on demand during an upload), in a buffer of
 * their own (not the shared pool: each read stands alone, at offset 0).
 */
export function readRangeSync(file: string, begin: number, end: number): Buffer {
  const buf = Buffer.allocUnsafeSlow(end - begin);
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    for (let done = 0; done < buf.length; ) {
      const bytesRead = fs.readSync(fd, buf, done, Math.min(READ_CHUNK, buf.length - done), begin + done);
      if (bytesRead === 0) throw new ModelFormatError(file, `file ended at byte ${begin + done} while reading [${begin}, ${end}): changed while loading?`);
      done += bytesRead;
    }
    return buf;
  } catch (e) {
    throw fsError(e, file);
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Reads and parses a JSON file; `what` says what the file is for, for the not-found message. */
export async function readJsonFile(file: string, what: string): Promise<unknown> {
  const text = (await readModelFile(file)).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ModelFormatError(file, `${what} is not valid JSON (${(e as Error).message})`);
  }
}

function fsError(e: unknown, file: string): KvpackError {
  if (e instanceof KvpackError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new ModelFormatError(file, 'file not found');
  if (code === 'EACCES' || code === 'EPERM') return new ModelFormatError(file, 'permission denied');
  if (code === 'EISDIR') return new ModelFormatError(file, 'is a directory, expected a file');
  return new ModelFormatError(file, `cannot be read (${(e as Error).message})`);
}

/**
 * What a tokenizer constructor threw, as one of our errors naming `file`: a corrupt vocabulary
 * must never escape as a TypeError, and fs errors keep their plain meaning (not found, …).
 */
export function tokenizerError(e: unknown, file: string): KvpackError {
  if (e instanceof KvpackError) return e;
  if (typeof (e as NodeJS.ErrnoException)?.code === 'string') return fsError(e, file);
  return new ModelFormatError(file, `tokenizer cannot be read (${e instanceof Error ? e.message : String(e)})`);
}

/** Runs a synchronous tokenizer constructor, converting what it throws with tokenizerError. */
export function buildTokenizer<T>(file: string, build: () => T): T {
  try {
    return build();
  } catch (e) {
    throw tokenizerError(e, file);
  }
}

/**
 * checkTensors, after making sure the config's layer count is not absurd for the file: a corrupt
 * count must not make it enumerate billions of expected tensors.
 */
export function checkLoadedTensors(config: ModelConfig, tensors: Map<string, RawTensor>, file: string): void {
  if (config.numLayers > tensors.size) {
    throw new ModelFormatError(file, `config says ${config.numLayers} layers but the file holds only ${tensors.size} tensors`);
  }
  checkTensors(config, tensors, file);
  for (const name of tensors.keys()) {
    const layer = /^layers\.(\d+)\./.exec(name)?.[1];
    if (layer !== undefined && Number(layer) >= config.numLayers) {
      throw new ModelFormatError(file, `config says ${config.numLayers} layers but the file holds ${name.split('.').slice(0, 2).join(' ')}: the layer count and the tensors disagree`);
    }
  }
}

/** A tokenizer may not produce ids past the embedding's rows (fewer is fine: vocabularies are often padded). */
export function checkTokenizerFits(tokenizer: Tokenizer, config: ModelConfig, file: string): void {
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new ModelFormatError(file, `tokenizer has ${tokenizer.vocabSize} tokens but the model's vocabulary is ${config.vocabSize}`);
  }
}

/** One tensor as the safetensors header describes it; dtype is the file's string (F32, BF16, I64, …). */
export interface SafetensorsEntry {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
  /** The file it came from (shards differ). */
  file: string;
}

/** Element sizes of the dtypes the safetensors format defines, so every entry's byte range can be checked. */
const ELEMENT_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

const SUPPORTED: Record<string, DType> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** A tensor's header entry with its data range as absolute file offsets. */
interface StLayout {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/** The header's length field, checked against the file size. */
function headerLength(head: Uint8Array, fileSize: number, file: string): number {
  if (fileSize < 8 || head.length < 8) throw new ModelFormatError(file, `file is ${fileSize} bytes, too short for a safetensors header`);
  const n = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw new ModelFormatError(file, `header length ${n} runs past the end of the file (${fileSize} bytes): truncated or not safetensors`);
  }
  return Number(n);
}

/**
 * Checks a safetensors header and returns where each tensor lies. `head` holds at least the length
 * field and the JSON header; `fileSize` is the whole file's, against which every range is checked.
 */
function safetensorsLayout(head: Uint8Array, fileSize: number, file: string): StLayout[] {
  const dataStart = 8 + headerLength(head, fileSize, file);
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(head.buffer, head.byteOffset + 8, dataStart - 8).toString('utf8'));
  } catch (e) {
    throw new ModelFormatError(file, `safetensors header is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(header)) throw new ModelFormatError(file, 'safetensors header is not a JSON object');

  const dataLen = fileSize - dataStart;
  const layout: StLayout[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (!isObject(raw)) throw new ModelFormatError(file, `tensor ${name}: header entry is not an object`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (typeof dtype !== 'string') throw new ModelFormatError(file, `tensor ${name}: dtype is missing or not a string`);
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new ModelFormatError(file, `tensor ${name}: shape must be an array of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw new ModelFormatError(file, `tensor ${name}: data_offsets must be two non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end || end > dataLen) {
      throw new ModelFormatError(
        file,
        `tensor ${name}: data_offsets [${begin}, ${end}] run past the end of the data (${dataLen} bytes): truncated file?`,
      );
    }
    const size = own(ELEMENT_BYTES, dtype);
    if (size !== undefined) {
      const need = (shape as number[]).reduce((a, d) => a * d, 1) * size;
      if (need !== end - begin) {
        throw new ModelFormatError(
          file,
          `tensor ${name}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} [${shape.join(', ')}] needs ${need}`,
        );
      }
    }
    layout.push({ name, dtype, shape: shape as number[], begin: dataStart + begin, end: dataStart + end });
  }
  checkNoOverlap(layout.map((t) => [t.begin, t.end, t.name]), file);
  checkTiling(layout.map((t) => [t.begin - dataStart, t.end - dataStart, t.name]), dataLen, 1, file);
  return layout;
}

/** Parses a safetensors file held whole in `buf`; tensors are views into it. */
export function parseSafetensors(buf: Uint8Array, file: string): Map<string, SafetensorsEntry> {
  const layout = safetensorsLayout(buf, buf.length, file);
  return new Map(layout.map(({ name, dtype, shape, begin, end }) => [name, { name, dtype, shape, data: buf.subarray(begin, end), file }]));
}

/** The JSON header is small in practice; this bounds the allocation a corrupt length field can ask for. */
const MAX_HEADER_BYTES = 100 * 2 ** 20;

/** A safetensors file's header, checked against its size; no tensor data is read. */
async function readLayout(file: string): Promise<StLayout[]> {
  const size = await modelFileSize(file);
  const [lenField] = await readFileRanges(file, [[0, Math.min(8, size)]]);
  const n = headerLength(lenField!, size, file);
  if (n > MAX_HEADER_BYTES) throw new ModelFormatError(file, `header length ${n} is implausibly large (over ${MAX_HEADER_BYTES} bytes)`);
  const [head] = await readFileRanges(file, [[0, 8 + n]]);
  return safetensorsLayout(head!, size, file);
}

/** What a safetensors header says of each tensor (the data stays on disk). */
export type SafetensorsHeaderEntry = Omit<SafetensorsEntry, 'data'>;

export async function readSafetensorsHeader(file: string): Promise<Map<string, SafetensorsHeaderEntry>> {
  return new Map((await readLayout(file)).map(({ name, dtype, shape }) => [name, { name, dtype, shape, file }]));
}

/** Reads a safetensors file without holding it in one Buffer: the header, then each tensor into its own. */
export async function readSafetensorsInParts(file: string): Promise<Map<string, SafetensorsEntry>> {
  const layout = await readLayout(file);
  const data = await readFileRanges(file, layout.map((t) => [t.begin, t.end] as const));
  return new Map(layout.map(({ name, dtype, shape }, i) => [name, { name, dtype, shape, data: data[i]!, file }]));
}

/** One safetensors file, read whole when it fits in one Buffer and tensor by tensor when it does not. */
export async function readSafetensorsFile(file: string): Promise<Map<string, SafetensorsEntry>> {
  if ((await modelFileSize(file)) > MAX_WHOLE_FILE_BYTES) return readSafetensorsInParts(file);
  return parseSafetensors(await readModelFile(file), file);
}

/** Byte ranges [begin, end) with their tensor names must not overlap (empty tensors never do). */
export function checkNoOverlap(ranges: [number, number, string][], file: string): void {
  const sorted = ranges.filter(([b, e]) => e > b).sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1]!;
    const cur = sorted[i]!;
    if (cur[0] < prev[1]) throw new ModelFormatError(file, `tensors ${prev[2]} and ${cur[2]} overlap in the file`);
  }
}

/**
 * Tensors must tile the data section in offset order, each starting where the one before ends
 * (rounded up to `alignment`), the last ending within `alignment` bytes of the end. A size that no
 * longer matches the offsets (a tensor type changed, a header length one byte off) shows up here.
 */
export function checkTiling(ranges: [number, number, string][], dataLen: number, alignment: number, file: string): void {
  const sorted = ranges.filter(([b, e]) => e > b).sort((x, y) => x[0] - y[0]);
  let end = 0;
  let prev = 'the data section';
  for (const [begin, stop, name] of sorted) {
    const expected = Math.ceil(end / alignment) * alignment;
    if (begin !== expected) {
      throw new ModelFormatError(file, `tensor ${name} starts at data offset ${begin} but ${prev} ends at ${end}: tensor sizes and offsets disagree (a changed type or header length?)`);
    }
    end = stop;
    prev = `tensor ${name}`;
  }
  if (dataLen - end >= alignment) {
    throw new ModelFormatError(file, `the data section holds ${dataLen} bytes but its tensors end at ${end}: tensor sizes and offsets disagree (a changed type or header length?)`);
  }
}

/** The entry as a RawTensor under its own name; only F32, F16 and BF16 are read. */
export function toRawTensor(e: SafetensorsEntry): RawTensor {
  return { name: e.name, dtype: tensorDType(e), shape: e.shape, data: e.data };
}

/** The kernel dtype of an entry's F32, F16 or BF16; any other is refused, naming the tensor. */
export function tensorDType(e: SafetensorsHeaderEntry): DType {
  const dtype = own(SUPPORTED, e.dtype);
  if (!dtype) throw new UnsupportedModelError(e.file, `tensor ${e.name} has dtype ${e.dtype}; kvpack reads F32, F16 and BF16`);
  return dtype;
}

export const SAFETENSORS_FILE = 'model.safetensors';
export const SAFETENSORS_INDEX = 'model.safetensors.index.json';

/**
 * Every tensor of a checkpoint directory: `model.safetensors`, or the shards that
 * `model.safetensors.index.json` lists in its weight_map (each shard read once by `readFile`:
 * readSafetensorsFile for the weights, readSafetensorsHeader for their shapes alone).
 */
export async function readSafetensorsDir<T extends SafetensorsHeaderEntry>(
  dir: string,
  readFile: (file: string) => Promise<Map<string, T>>,
): Promise<Map<string, T>> {
  const indexFile = path.join(dir, SAFETENSORS_INDEX);
  if (!(await exists(indexFile))) {
    const single = path.join(dir, SAFETENSORS_FILE);
    if (!(await exists(single))) {
      throw new ModelFormatError(dir, `no ${SAFETENSORS_FILE} or ${SAFETENSORS_INDEX}: kvpack reads safetensors weights only`);
    }
    return readFile(single);
  }
  const index = await readJsonFile(indexFile, 'safetensors index');
  const weightMap = isObject(index) ? index.weight_map : undefined;
  if (!isObject(weightMap)) throw new ModelFormatError(indexFile, 'has no weight_map object');
  const shardOf = new Map<string, string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    // Shards are plain file names beside the index; anything else could point outside the model directory.
    if (typeof shard !== 'string' || shard === '' || path.basename(shard) !== shard || shard === '..' || shard === '.') {
      throw new ModelFormatError(indexFile, `weight_map entry for ${name} is not a file name in this directory: ${JSON.stringify(shard)}`);
    }
    shardOf.set(name, shard);
  }
  const all = new Map<string, T>();
  for (const shard of new Set(shardOf.values())) {
    const shardFile = path.join(dir, shard);
    for (const [name, entry] of await readFile(shardFile)) {
      if (all.has(name)) throw new ModelFormatError(shardFile, `tensor ${name} also appears in ${path.basename(all.get(name)!.file)}`);
      all.set(name, entry);
    }
  }
  for (const [name, shard] of shardOf) {
    const entry = all.get(name);
    if (!entry || path.basename(entry.file) !== shard) {
      throw new ModelFormatError(indexFile, `weight_map puts ${name} in ${shard}, but that shard does not hold it`);
    }
  }
  return all;
}

async function exists(file: string): Promise<boolean> {
  try {
    await fsp.access(file);
    return true;
  } catch {
    return false;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}
