import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ModelFormatError, UnsupportedModelError, UsageError } from '../errors.js';
import type { Checkpoint, CheckpointFormat } from './checkpoint.js';
import { validateConfig, type ModelConfig } from './config.js';
import { loadGguf, readGgufHeader } from './gguf.js';
import { loadHfDir, parseHfConfig, readHfTensorShapes } from './hf.js';
import { loadLlama2c, parseLlama2c } from './llama2c.js';
import { readJsonFile, readModelFile } from './safetensors.js';
import type { TensorShape } from './tensor.js';

export interface LoadOptions {
  /** A tokenizer file to use instead of the one found with the model (llama2.c tokenizer.bin, HF tokenizer.json). */
  tokenizer?: string;
}

/**
 * Loads a local checkpoint in the format `file` holds (checkpointFormat). Every loader returns a
 * checkpoint whose config has passed validateConfig and whose tensors have passed checkTensors.
 */
export async function loadCheckpoint(file: string, options: LoadOptions = {}): Promise<Checkpoint> {
  const format = await checkpointFormat(file);
  if (format === 'hf') return loadHfDir(hfDir(file), options);
  if (format === 'gguf') {
    if (options.tokenizer !== undefined) throw new UsageError(`${file}: a GGUF file carries its own tokenizer; do not pass one`);
    return loadGguf(file);
  }
  return loadLlama2c(file, options);
}

/** What a checkpoint's header says, before any weight is read: enough for the memory plan and `kvpack info`. */
export interface ModelHeader {
  source: string;
  format: CheckpointFormat;
  config: ModelConfig;
  /** Bytes of the weight files (the memory plan's estimate of what uploading takes). */
  weightBytes: number;
  /** Dtype and shape of each tensor the model uses. */
  tensors: TensorShape[];
}

/**
 * A checkpoint's header: a GGUF header, an HF config.json and the safetensors headers, a llama2.c
 * header (those files are small and read whole).
 */
export async function readModelHeader(file: string): Promise<ModelHeader> {
  const format = await checkpointFormat(file);
  if (format === 'gguf') {
    const { config, tensorBytes, tensors } = await readGgufHeader(file);
    return { source: file, format, config, weightBytes: tensorBytes, tensors };
  }
  if (format === 'llama2c') {
    const buf = await readModelFile(file);
    const { config, tensors } = parseLlama2c(buf, file);
    return { source: file, format, config, weightBytes: buf.byteLength, tensors: [...tensors.values()] };
  }
  const dir = hfDir(file);
  const configFile = path.join(dir, 'config.json');
  const hf = parseHfConfig(await readJsonFile(configFile, 'config.json'), configFile);
  const config = validateConfig({ ...hf.config, tiedEmbeddings: hf.tieWordEmbeddings }, configFile);
  let weightBytes = 0;
  for (const name of await fsp.readdir(dir)) if (name.endsWith('.safetensors')) weightBytes += (await fsp.stat(path.join(dir, name))).size;
  return { source: dir, format, config, weightBytes, tensors: await readHfTensorShapes(dir) };
}

/**
 * The format `file` holds: a directory (or a file inside one named config.json / *.safetensors) →
 * Hugging Face; a `.gguf` file or one starting with the GGUF magic → GGUF; a `.bin` file → llama2.c.
 */
async function checkpointFormat(file: string): Promise<CheckpointFormat> {
  let isDir: boolean;
  try {
    isDir = (await fsp.stat(file)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ModelFormatError(file, code === 'ENOENT' ? 'no such file or directory' : `cannot be read (${(e as Error).message})`);
  }
  if (isDir) {
    await checkHfDir(file);
    return 'hf';
  }
  const base = path.basename(file);
  if (base === 'config.json' || base.endsWith('.safetensors') || base === 'model.safetensors.index.json') return 'hf';
  if (base.endsWith('.gguf') || (await startsWithGgufMagic(file))) return 'gguf';
  if (base.endsWith('.bin')) return 'llama2c';
  throw new UnsupportedModelError(
    file,
    'cannot tell the checkpoint format: expected a Hugging Face model directory, a .gguf file or a llama2.c .bin file',
  );
}

/** The model directory of an HF path (the directory itself, or the one holding a named file). */
function hfDir(file: string): string {
  const base = path.basename(file);
  return base === 'config.json' || base.endsWith('.safetensors') || base === 'model.safetensors.index.json' ? path.dirname(file) : file;
}

/** A folder without config.json that holds a .gguf or .bin: name the files to pass instead. */
async function checkHfDir(dir: string): Promise<void> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  if (names.includes('config.json')) return;
  const checkpoints = names.filter((n) => n.endsWith('.gguf') || (n.endsWith('.bin') && !/^tok.*\.bin$|^tokenizer\.bin$/.test(n)));
  if (checkpoints.length === 0) return; // loadHfDir reports the missing config.json
  throw new ModelFormatError(
    dir,
    `no config.json, so not a Hugging Face model directory; it holds ${checkpoints.join(', ')}: pass that file as the model (--model ${path.join(dir, checkpoints[0]!)})`,
  );
}

async function startsWithGgufMagic(file: string): Promise<boolean> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(file, 'r');
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return bytesRead === 4 && head.toString('latin1') === 'GGUF';
  } catch {
    return false; // the loader that follows reports unreadable files properly
  } finally {
    await fh?.close();
  }
}
