import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ModelConfig } from '../model/config.js';
import { parseHfConfig } from '../model/hf.js';
import { defaultModelPath } from '../engine/model.js';
import { randomLlama, writeHfDir, writeLlamaGguf, type FloatDType } from '../dev/write.js';

/** A model the bench runs: one GGUF both engines can load, and the same weights as an HF directory. */
export interface BenchModel {
  id: string;
  /** Shown in tables. */
  label: string;
  gguf: string;
  hfDir: string;
  vocabSize: number;
  /** Token ids below this are special (control) tokens; prompts avoid them. */
  firstPlainToken: number;
}

export interface ModelSpec {
  id: string;
  /** `--only` names that select it. */
  groups: string[];
  label: string;
  resolve(cacheDir: string, log: (msg: string) => void): Promise<BenchModel>;
}

/** Bumped when the writer changes what it writes, so stale cached files are rewritten. */
const WRITER_VERSION = 3;
const execFileAsync = promisify(execFile);

export function sharedDir(): string {
  return path.dirname(path.dirname(defaultModelPath()));
}

/** Where generated models live (gitignored), relative to the working directory unless KVPACK_BENCH_CACHE says otherwise. */
export function defaultCacheDir(): string {
  return process.env.KVPACK_BENCH_CACHE ?? path.resolve('.kvpack-cache', 'bench');
}

const ref6m: ModelSpec = {
  id: 'ref-6m',
  groups: ['ref-6m'],
  label: 'ref-6m (f32)',
  async resolve() {
    const dir = defaultModelPath();
    return { id: 'ref-6m', label: this.label, gguf: path.join(dir, 'ref-6m.gguf'), hfDir: dir, vocabSize: 8192, firstPlainToken: 17 };
  },
};

function smollmShape(dtype: FloatDType): ModelSpec {
  const id = `135m-${dtype.toLowerCase()}`;
  return {
    id,
    groups: ['135m', id],
    label: `SmolLM2-135M shape, random ${dtype.toLowerCase()}`,
    async resolve(cacheDir, log) {
      const src = path.join(sharedDir(), 'models', 'smollm2-135m');
      const configFile = path.join(src, 'config.json');
      const hf = parseHfConfig(JSON.parse(await fsp.readFile(configFile, 'utf8')), configFile);
      const config: ModelConfig = { ...hf.config, tiedEmbeddings: hf.tieWordEmbeddings };
      const files = await ensureRandomModel({
        cacheDir, name: `smollm2-135m-random-${dtype.toLowerCase()}`, config, dtype, seed: 1,
        tokenizerJson: path.join(src, 'tokenizer.json'), pre: 'smollm', bos: hf.bos, eos: hf.eos[0], log,
      });
      // SmolLM2's tokenizer has 17 added special tokens at ids 0-16.
      return { id, label: this.label, ...files, vocabSize: config.vocabSize, firstPlainToken: 17 };
    },
  };
}

/** A GGUF quantized by llama.cpp's own quantizer (../shared/tools/quantize-gguf.py), rewritten when older than its source. */
async function ensureQuantized(src: string, gguf: string, type: string, log: (msg: string) => void): Promise<void> {
  const [from, out] = await Promise.all([fsp.stat(src), fsp.stat(gguf).catch(() => undefined)]);
  if (out && out.mtimeMs >= from.mtimeMs) return;
  log(`quantizing ${path.basename(src)} to ${type} with llama.cpp`);
  const tmp = `${gguf}.${process.pid}.tmp`;
  await execFileAsync('python3', [path.join(sharedDir(), 'tools', 'quantize-gguf.py'), src, tmp, type]);
  await fsp.rename(tmp, gguf);
}

/**
 * The f16 SmolLM2-135M-shape model quantized by llama.cpp's own quantizer, as people download it.
 * Both engines read the one GGUF (the HF directory has no quantized form). Rows of 576 values are not
 * whole 256-blocks, so llama.cpp stores those matrices in its fallback types.
 */
function smollmQuantized(type: 'Q8_0' | 'Q4_K_M'): ModelSpec {
  const id = `135m-${type.toLowerCase()}`;
  const f16 = smollmShape('F16');
  return {
    id,
    groups: ['135m-quant', id],
    label: `SmolLM2-135M shape, random f16 quantized to ${type} by llama.cpp`,
    async resolve(cacheDir, log) {
      const base = await f16.resolve(cacheDir, log);
      const gguf = path.join(cacheDir, `smollm2-135m-random-${type.toLowerCase()}.gguf`);
      await ensureQuantized(base.gguf, gguf, type, log);
      return { ...base, id, label: this.label, gguf, hfDir: gguf };
    },
  };
}

/** Llama-3.2-1B's shape: 16 layers, hidden 2048, 32 query / 8 KV heads of 64, FFN 8192, tied embeddings. */
const LLAMA_1B_SHAPE = { hiddenSize: 2048, intermediateSize: 8192, numLayers: 16, numHeads: 32, numKvHeads: 8, headDim: 64, ropeTheta: 500000, tiedEmbeddings: true };

/**
 * The 1B shape with random weights (SmolLM2's tokenizer: a 49152 vocabulary, smaller than Llama 3's),
 * written in f16 and quantized from it by llama.cpp's quantizer: the size and formats people run.
 * GGUF only (an HF directory would double 2 GiB of writing); both engines read the one file.
 */
function llama1bShape(type: 'F16' | 'Q8_0' | 'Q6_K' | 'Q4_K_M' | 'Q4_0'): ModelSpec {
  const id = `1b-${type.toLowerCase()}`;
  return {
    id,
    groups: ['1b', id],
    label: `Llama-3.2-1B shape, random ${type === 'F16' ? 'f16' : `f16 quantized to ${type} by llama.cpp`}`,
    async resolve(cacheDir, log) {
      const src = path.join(sharedDir(), 'models', 'smollm2-135m');
      const configFile = path.join(src, 'config.json');
      const hf = parseHfConfig(JSON.parse(await fsp.readFile(configFile, 'utf8')), configFile);
      const config: ModelConfig = { ...hf.config, ...LLAMA_1B_SHAPE };
      const { gguf: f16 } = await ensureRandomModel({
        cacheDir, name: 'llama-1b-shape-random-f16', config, dtype: 'F16', seed: 1, hf: false,
        tokenizerJson: path.join(src, 'tokenizer.json'), pre: 'smollm', bos: hf.bos, eos: hf.eos[0], log,
      });
      const gguf = type === 'F16' ? f16 : path.join(cacheDir, `llama-1b-shape-random-${type.toLowerCase()}.gguf`);
      if (type !== 'F16') await ensureQuantized(f16, gguf, type, log);
      return { id, label: this.label, gguf, hfDir: gguf, vocabSize: config.vocabSize, firstPlainToken: 17 };
    },
  };
}

export const MODEL_SPECS: ModelSpec[] = [
  ...(['F16', 'Q8_0', 'Q6_K', 'Q4_K_M', 'Q4_0'] as const).map(llama1bShape),
  ref6m, smollmShape('F32'), smollmShape('F16'), smollmQuantized('Q8_0'), smollmQuantized('Q4_K_M')];

export interface RandomModelRequest {
  cacheDir: string;
  name: string;
  config: ModelConfig;
  dtype: FloatDType;
  seed: number;
  tokenizerJson: string;
  /** llama.cpp pre-tokenizer name for the GGUF. */
  pre: string;
  bos?: number;
  eos?: number;
  /** Also the HF directory (default true); false writes the GGUF only. */
  hf?: boolean;
  log: (msg: string) => void;
}

/**
 * Writes a random model as an HF directory with a GGUF beside the safetensors, unless a finished
 * one with the same parameters is already there (params.json is written last and marks it done).
 */
export async function ensureRandomModel(req: RandomModelRequest): Promise<{ gguf: string; hfDir: string }> {
  const tokenizerHash = createHash('sha256').update(await fsp.readFile(req.tokenizerJson)).digest('hex').slice(0, 16);
  const params = {
    writer: WRITER_VERSION, ...(req.hf === false && { hf: false }), config: req.config, dtype: req.dtype, seed: req.seed, tokenizer: tokenizerHash, pre: req.pre, bos: req.bos ?? null, eos: req.eos ?? null,
  };
  const dir = path.join(req.cacheDir, req.name);
  const gguf = path.join(dir, 'model.gguf');
  const marker = path.join(dir, 'params.json');
  const want = JSON.stringify(params, null, 2);
  const have = await fsp.readFile(marker, 'utf8').catch(() => undefined);
  if (have === want) return { gguf, hfDir: dir };

  const t0 = performance.now();
  req.log(`writing ${req.name} (${req.dtype}, seed ${req.seed}) to ${path.relative(process.cwd(), dir) || '.'}`);
  await fsp.rm(marker, { force: true });
  const model = randomLlama(req.config, req.dtype, req.seed);
  if (req.hf !== false) await writeHfDir(dir, model, req.tokenizerJson, { bos: req.bos, eos: req.eos });
  else await fsp.mkdir(dir, { recursive: true });
  await writeLlamaGguf(gguf, model, { tokenizerJson: req.tokenizerJson, pre: req.pre, bos: req.bos, eos: req.eos }, { name: req.name });
  await fsp.writeFile(marker, want);
  req.log(`wrote ${req.name} in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  return { gguf, hfDir: dir };
}
