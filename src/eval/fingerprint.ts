import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ModelFormatError } from '../errors.js';

const EDGE = 1 << 20;

/** Files of a Hugging Face directory that decide what the model computes (not READMEs, not a stray .gguf beside it). */
const HF_FILES = /^(config\.json|tokenizer\.json|tokenizer\.model|tokenizer_config\.json|model\.safetensors\.index\.json|.*\.safetensors)$/;

/**
 * A cheap, stable identity of a local checkpoint: sha256 over each relevant file's name, size and
 * its first and last MiB. Reading whole multi-GiB weight files on every sweep would cost more than
 * some rows; a retrained model changes its size or its edges (the header and the last tensors).
 * The path itself is left out, so a moved or re-downloaded model keeps its results.
 */
export function modelFingerprint(modelPath: string): string {
  const hash = createHash('sha256');
  for (const file of fingerprintFiles(modelPath)) {
    const size = fs.statSync(file).size;
    hash.update(`${path.basename(file)}\0${size}\0`);
    const fd = fs.openSync(file, 'r');
    try {
      hash.update(readAt(fd, 0, Math.min(EDGE, size)));
      if (size > EDGE) hash.update(readAt(fd, Math.max(EDGE, size - EDGE), Math.min(EDGE, size - EDGE)));
    } finally {
      fs.closeSync(fd);
    }
  }
  return hash.digest('hex');
}

function fingerprintFiles(modelPath: string): string[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(modelPath);
  } catch {
    throw new ModelFormatError(modelPath, 'no such file or directory');
  }
  if (stat.isDirectory()) {
    const names = fs.readdirSync(modelPath).filter((n) => HF_FILES.test(n)).sort();
    if (names.length === 0) throw new ModelFormatError(modelPath, 'no config.json or *.safetensors to fingerprint');
    return names.map((n) => path.join(modelPath, n));
  }
  // A llama2.c checkpoint reads its tokenizer from beside it; the tokenizer decides text perplexity.
  const files = [modelPath];
  if (modelPath.endsWith('.bin')) {
    const dir = path.dirname(modelPath);
    for (const n of fs.readdirSync(dir).sort()) {
      if (/^(tok\d+|tokenizer)\.bin$/.test(n) && path.join(dir, n) !== path.join(modelPath)) files.push(path.join(dir, n));
    }
  }
  return files;
}

function readAt(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}
