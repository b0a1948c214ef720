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

/**
 * The f16 SmolLM2-135M-shape model quantized by llama.cpp's own quantizer (../shared/tools/quantize-gguf.py),
 * as people download it. Both engines read the one GGUF (the HF directory has no quantized form). Rows
 * of 576 values are not whole 256-blocks, so llama.cpp stores those matrices in its fallback types.
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
      const [src, out] = await Promise.all([fsp.stat(base.gguf), fsp.stat(gguf).catch(() => undefined)]);
      if (!out || out.mtimeMs < src.mtimeMs) {
        log(`quantizing ${path.basename(base.gguf)} to ${type} with llama.cpp`);
        const tmp = `${gguf}.${process.pid}.tmp`;
        await execFileAsync('python3', [path.join(sharedDir(), 'tools', 'quantize-gguf.py'), base.gguf, tmp, type]);
        await fsp.rename(tmp, gguf);
      }
      return { ...base, id, label: this.label, gguf, hfDir: gguf };
    },
  };
}

export const MODEL_SPECS: ModelSpec[] = [ref6m, smollmShape('F32'), smollmShape('F16'), smollmQuantized('Q8_0'), smollmQuantized('Q4_K_M')];

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
  log: (msg: string) => void;
}

/**
 * Writes a random model as an HF directory with a GGUF beside the safetensors, unless a finished
 * one with the same parameters is already there (params.json is written last and marks it done).
 */
export async function ensureRandomModel(req: RandomModelRequest): Promise<{ gguf: string; hfDir: string }> {
  const tokenizerHash = createHash('sha256').update(await fsp.readFile(req.tokenizerJson)).digest('hex').slice(0, 16);
  const params = {
    writer: WRITER_VERSION, config: req.config, dtype: req.dtype, seed: req.seed, tokenizer: tokenizerHash, pre: req.pre, bos: req.bos ?? null, eos: req.eos ?? null,
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
  await writeHfDir(dir, model, req.tokenizerJson, { bos: req.bos, eos: req.eos });
  await writeLlamaGguf(gguf, model, { tokenizerJson: req.tokenizerJson, pre: req.pre, bos: req.bos, eos: req.eos }, { name: req.name });
  await fsp.writeFile(marker, want);
  req.log(`wrote ${req.name} in ${((performance.now() - t0) / 1000).toFixed(1)}s`);
  return { gguf, hfDir: dir };
}
