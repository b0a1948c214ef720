import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { ModelFormatError, UnsupportedModelError } from '../errors.js';
import { HfTokenizer } from '../tokenizer/hf.js';
import type { Checkpoint } from './checkpoint.js';
import { validateConfig, type Architecture, type ModelConfig } from './config.js';
import { own } from '../util/schema.js';
import {
  buildTokenizer, checkLoadedTensors, checkTokenizerFits, readJsonFile, readModelFile, readSafetensorsDir, readSafetensorsFile, readSafetensorsHeader,
  tensorDType, toRawTensor, type SafetensorsEntry,
} from './safetensors.js';
import { parseHfRopeScaling } from './rope-scaling.js';
import { TensorNames as N, type RawTensor, type TensorShape } from './tensor.js';

/** HF `architectures` entries and `model_type` values kvpack runs, and the architecture each means. */
const ARCHITECTURES: Record<string, Architecture> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
  Qwen3ForCausalLM: 'qwen3',
};
const MODEL_TYPES: Record<string, Architecture> = { llama: 'llama', mistral: 'mistral', qwen2: 'qwen2', qwen3: 'qwen3' };

/** What config.json says beyond the ModelConfig: the special ids the tokenizer should know. */
export interface HfConfig {
  config: ModelConfig;
  /** tie_word_embeddings as written (HF's default is false). */
  tieWordEmbeddings: boolean;
  bos: number | undefined;
  eos: number[];
}

/** Reads a ModelConfig out of a parsed config.json; `file` names config.json in errors. */
export function parseHfConfig(json: unknown, file: string): HfConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelFormatError(file, 'is not a JSON object');
  const c = json as Record<string, unknown>;
  const supported = `supported: ${Object.keys(ARCHITECTURES).join(', ')} (model_type ${Object.keys(MODEL_TYPES).join(', ')})`;
  let architecture: Architecture | undefined;
  if (c.model_type !== undefined) {
    architecture = typeof c.model_type === 'string' ? MODEL_TYPES[c.model_type] : undefined;
    if (!architecture) throw new UnsupportedModelError(file, `model_type ${JSON.stringify(c.model_type)} is not supported; ${supported}`);
  }
  if (c.architectures !== undefined) {
    const archs = Array.isArray(c.architectures) ? c.architectures : [];
    const known = archs.map((a) => (typeof a === 'string' ? ARCHITECTURES[a] : undefined)).find((a) => a !== undefined);
    if (!known) throw new UnsupportedModelError(file, `architectures ${JSON.stringify(c.architectures)} are not supported; ${supported}`);
    architecture ??= known;
  }
  if (!architecture) throw new UnsupportedModelError(file, `has neither architectures nor model_type; ${supported}`);

  const num = (key: string, fallback?: number): number => {
    const v = c[key];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new ModelFormatError(file, `config field ${key} is missing`);
    }
    if (typeof v !== 'number') throw new ModelFormatError(file, `config field ${key} must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  if (architecture !== 'qwen2' && c.attention_bias === true) {
    throw new UnsupportedModelError(file, `attention_bias is not supported for ${architecture} (only qwen2-style q/k/v biases are)`);
  }
  if (c.mlp_bias === true) throw new UnsupportedModelError(file, 'mlp_bias is not supported');
  const maxPositions = num('max_position_embeddings');
  const ropeScaling = parseHfRopeScaling(c.rope_scaling, maxPositions, file);
  const hiddenSize = num('hidden_size');
  const numHeads = num('num_attention_heads');
  const config: ModelConfig = {
    architecture,
    hiddenSize,
    intermediateSize: num('intermediate_size'),
    numLayers: num('num_hidden_layers'),
    numHeads,
    numKvHeads: num('num_key_value_heads', numHeads),
    headDim: num('head_dim', hiddenSize / numHeads),
    vocabSize: num('vocab_size'),
    maxContext: maxPositions,
    rmsEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    ...(ropeScaling.kind === 'none' ? {} : { ropeScaling }),
    ropeLayout: 'half',
    tiedEmbeddings: false, // settled once we know whether lm_head.weight exists
    qkvBias: architecture === 'qwen2',
  };
  return { config, tieWordEmbeddings: c.tie_word_embeddings === true, bos: tokenId(c.bos_token_id), eos: tokenIds(c.eos_token_id) };
}

function tokenId(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
}

function tokenIds(v: unknown): number[] {
  const list = Array.isArray(v) ? v : [v];
  return list.map(tokenId).filter((x): x is number => x !== undefined);
}

/** HF per-layer suffixes (after `model.layers.N.`) and the canonical name each maps to. */
export const HF_LAYER_NAMES: Record<string, (l: number) => string> = {
  'self_attn.q_proj.weight': N.wq,
  'self_attn.k_proj.weight': N.wk,
  'self_attn.v_proj.weight': N.wv,
  'self_attn.o_proj.weight': N.wo,
  'self_attn.q_proj.bias': N.bq,
  'self_attn.k_proj.bias': N.bk,
  'self_attn.v_proj.bias': N.bv,
  'self_attn.q_norm.weight': N.qNorm,
  'self_attn.k_norm.weight': N.kNorm,
  'input_layernorm.weight': N.attnNorm,
  'post_attention_layernorm.weight': N.ffnNorm,
  'mlp.gate_proj.weight': N.wGate,
  'mlp.up_proj.weight': N.wUp,
  'mlp.down_proj.weight': N.wDown,
};
export const HF_GLOBAL_NAMES: Record<string, string> = {
  'model.embed_tokens.weight': N.embed,
  'model.norm.weight': N.finalNorm,
  'lm_head.weight': N.lmHead,
};

/**
 * Maps HF tensor names to canonical ones; names kvpack does not use (rotary inv_freq buffers and
 * the like) are skipped, and only mapped tensors must have a supported dtype.
 */
export function mapHfTensors(entries: Map<string, SafetensorsEntry>): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const [name, entry] of entries) {
    const canonical = canonicalHfName(name);
    if (canonical) out.set(canonical, toRawTensor(entry));
  }
  return out;
}

/** The dtype and shape of each tensor kvpack uses, from the safetensors headers alone (no weight is read). */
export async function readHfTensorShapes(dir: string): Promise<TensorShape[]> {
  const entries = await readSafetensorsDir(dir, readSafetensorsHeader);
  return [...entries.values()].filter((e) => canonicalHfName(e.name)).map((e) => ({ dtype: tensorDType(e), shape: e.shape }));
}

function canonicalHfName(name: string): string | undefined {
  const global = own(HF_GLOBAL_NAMES, name);
  if (global) return global;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(name);
  const mapName = m ? own(HF_LAYER_NAMES, m[2]!) : undefined;
  return mapName?.(Number(m![1]));
}

/** Loads a Hugging Face model directory: config.json, safetensors weights (single or sharded), tokenizer.json. */
export async function loadHfDir(dir: string, options: { tokenizer?: string } = {}): Promise<Checkpoint> {
  const configFile = path.join(dir, 'config.json');
  const hf = parseHfConfig(await readJsonFile(configFile, 'config.json'), configFile);
  const genFile = path.join(dir, 'generation_config.json');
  const gen = await readOptionalJson(genFile);
  // Instruct models often list their end-of-turn ids only in generation_config.json.
  const eos = [...new Set([...hf.eos, ...tokenIds(gen?.eos_token_id)])];
  const bos = hf.bos ?? tokenId(gen?.bos_token_id);

  const tensors = mapHfTensors(await readSafetensorsDir(dir, readSafetensorsFile));
  const config = validateConfig({ ...hf.config, tiedEmbeddings: !tensors.has(N.lmHead) && hf.tieWordEmbeddings }, configFile);
  checkLoadedTensors(config, tensors, dir);

  const tokFile = options.tokenizer ?? path.join(dir, 'tokenizer.json');
  const tokText = (await readModelFile(tokFile)).toString('utf8');
  const tokenizer = buildTokenizer(tokFile, () => new HfTokenizer(tokText, tokFile, { bos, eos }));
  checkTokenizerFits(tokenizer, config, tokFile);
  return { format: 'hf', source: dir, config, tensors, tokenizer };
}

async function readOptionalJson(file: string): Promise<Record<string, unknown> | undefined> {
  try {
    await fsp.access(file);
  } catch {
    return undefined;
  }
  const json = await readJsonFile(file, path.basename(file));
  return typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
}
