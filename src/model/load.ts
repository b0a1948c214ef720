import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ModelFormatError, UnsupportedModelError, UsageError } from '../errors.js';
import type { Checkpoint } from './checkpoint.js';
import { loadGguf } from './gguf.js';
import { loadHfDir } from './hf.js';
import { loadLlama2c } from './llama2c.js';

export interface LoadOptions {
  /** A tokenizer file to use instead of the one found with the model (llama2.c tokenizer.bin, HF tokenizer.json). */
  tokenizer?: string;
}

/**
 * Loads a local checkpoint, picking the format from what `file` is: a directory (or a file inside one
 * named config.json / *.safetensors) → Hugging Face; a `.gguf` file or one starting with the GGUF magic →
 * GGUF; a `.bin` file → llama2.c. Every loader returns a checkpoint whose config has passed
 * validateConfig and whose tensors have passed checkTensors.
 */
export async function loadCheckpoint(file: string, options: LoadOptions = {}): Promise<Checkpoint> {
  let isDir: boolean;
  try {
    isDir = (await fsp.stat(file)).isDirectory();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ModelFormatError(file, code === 'ENOENT' ? 'no such file or directory' : `cannot be read (${(e as Error).message})`);
  }
  if (isDir) {
    await checkHfDir(file);
    return loadHfDir(file, options);
  }
  const base = path.basename(file);
  if (base === 'config.json' || base.endsWith('.safetensors') || base === 'model.safetensors.index.json') {
    return loadHfDir(path.dirname(file), options);
  }
  if (base.endsWith('.gguf') || (await startsWithGgufMagic(file))) {
    if (options.tokenizer !== undefined) throw new UsageError(`${file}: a GGUF file carries its own tokenizer; do not pass one`);
    return loadGguf(file);
  }
  if (base.endsWith('.bin')) return loadLlama2c(file, options);
  throw new UnsupportedModelError(
    file,
    'cannot tell the checkpoint format: expected a Hugging Face model directory, a .gguf file or a llama2.c .bin file',
  );
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
