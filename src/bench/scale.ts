import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs, { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { GGML, GGUF_TYPE, ggufModelMetadata, ggufTokenizerMetadata, llamaGgufTensorInfos, writeGgufTensors, type GgufKv } from '../dev/write.js';
import { ropeOf } from '../kernels/rope.js';
import { loadModel, type Model } from '../engine/model.js';
import type { ModelConfig } from '../model/config.js';
import { readModelHeader } from '../model/load.js';
import { checkPlan, planMemory } from '../model/plan.js';
import { argmax } from '../engine/sample.js';
import { formatBytes, Progress } from '../util/progress.js';
import type { BenchContext, Section, SectionResult } from './section.js';
import { MODEL_SPECS, sharedDir } from './models.js';
import { formatNumber, type Table } from './table.js';

/** Llama-2-7B's shape (the model of the Q-Hitter and KVQuant papers). */
const LLAMA2_7B: ModelConfig = {
  architecture: 'llama', hiddenSize: 4096, intermediateSize: 11008, numLayers: 32, numHeads: 32, numKvHeads: 32, headDim: 128,
  vocabSize: 32000, maxContext: 4096, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'interleaved', tiedEmbeddings: false, qkvBias: false,
};
const MILLION = 2 ** 20;
const execFileAsync = promisify(execFile);
const LONG_CACHES = ['kvquant(bits=2)', 'int(bits=2)'];
/** Tokens per appendRows call while filling the million-token cache. */
const FILL_CHUNK = 8192;

/**
 * Beyond one 4 GiB WebAssembly memory (opt-in: writes a 13.5 GB GGUF under the cache dir).
 * 1. A Llama-2-7B-shaped model with random f16 weights loads and decodes, split over several
 *    memories, beside llama.cpp on the same file (one engine at a time: the machine holds one copy).
 * 2. The SmolLM2-135M shape holds 1,048,576 tokens in 2-bit caches; the fp16 cache is refused by the
 *    memory plan up front. The tokens are synthetic rows stored without attending (running the model
 *    over a million tokens would take hours); decoding then attends over all of them.
 * 3. A planted needle at that length: a key equal to the query at a chosen depth must take the
 *    attention, and its value must come out.
 */
/** An opt-in section of one table. */
function tableSection(id: string, describe: string, table: (ctx: BenchContext) => Promise<Table>): Section {
  return {
    id,
    describe,
    defaultOn: false,
    async run(ctx: BenchContext): Promise<SectionResult> {
      const t = await table(ctx);
      return { tables: [t], data: t.rows };
    },
  };
}

export const scaleSections: Section[] = [
  tableSection('scale-7b', 'beyond 4 GiB: Llama-2-7B-shape f16, kvpack vs llama.cpp (opt-in, writes a 13.5 GB GGUF)', (ctx) => sevenB(ctx)),
  tableSection('scale-1m', 'beyond 4 GiB: 1M-token 2-bit caches, fp16 refused up front, a needle at 1M (opt-in)', millionTokens),
];

export async function sevenB(ctx: BenchContext, config = LLAMA2_7B): Promise<Table> {
  const file = await ensureRandomF16(ctx, config);
  const decodeTokens = ctx.options.quick ? 4 : 16;
  const rows: Table['rows'] = [];
  // kvpack first, then llama.cpp; each run its own process (see scale-engine.ts)
  for (const engine of ['kvpack', 'llama.cpp']) {
    for (const threads of ctx.options.threads) {
      const fa = ctx.options.flashAttention;
      const args = [engine, file, String(threads), String(decodeTokens), fa === 'auto' ? 'auto' : fa ? 'on' : 'off', String(config.vocabSize)];
      const r = await engineRun(args);
      rows.push({ engine, threads, ...r });
      ctx.log(`7B shape, ${engine} ${threads} threads: ${formatNumber(r.tokS)} tok/s`);
    }
  }
  return {
    title: 'Llama-2-7B shape, random f16 weights (13.5 GB GGUF): load and decode',
    columns: [
      { key: 'engine', header: 'engine' },
      { key: 'threads', header: 'threads', format: String },
      { key: 'memories', header: 'kernel memories', format: String },
      { key: 'loadSeconds', header: 'load s', format: formatNumber },
      { key: 'peakRssGiB', header: 'peak RSS GiB', format: formatNumber },
      { key: 'tokS', header: 'decode tok/s' },
    ],
    rows,
    notes: [
      `${decodeTokens} greedy tokens after a 16-token prompt, one run; kvpack's cache full+fp16 like llama.cpp's.`,
      "Each row is its own process: peak RSS is that engine's alone (llama.cpp maps the file, so its pages count once read).",
      'Load seconds depend on how much of the file the page cache still holds from the run before (kvpack copies the weights into its memories; llama.cpp maps them).',
    ],
  };
}

/** What scale-engine.ts prints for one engine's run. */
export interface EngineRun {
  loadSeconds: number;
  tokS: number;
  peakRssGiB: number;
  memories: number;
}

/** Runs scale-engine.js in a child process and reads its one JSON line. */
async function engineRun(args: string[]): Promise<EngineRun> {
  const script = fileURLToPath(new URL('./scale-engine.js', import.meta.url));
  const { stdout } = await execFileAsync(process.execPath, [script, ...args], { maxBuffer: 1 << 20 }).catch((e: { stderr?: string; message: string }) => {
    throw new Error(`${args[0]} on the 7B shape failed: ${(e.stderr || e.message).trim()}`);
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as EngineRun;
}

/** n decoded tokens per second after feeding the prompt. */
export function decodeRate(session: ReturnType<Model['session']>, prompt: readonly number[], n: number): number {
  let logits = session.feed(prompt);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) logits = session.feed([argmax(logits)]);
  return (n * 1000) / (performance.now() - t0);
}

/** Writes a random f16 GGUF of this shape once (params.json beside it marks it finished). */
async function ensureRandomF16(ctx: BenchContext, config: ModelConfig): Promise<string> {
  const dir = path.join(ctx.options.cacheDir, config === LLAMA2_7B ? 'llama2-7b-shape-f16' : `random-f16-${config.hiddenSize}x${config.numLayers}`);
  const file = path.join(dir, 'model.gguf');
  const marker = path.join(dir, 'params.json');
  const want = JSON.stringify({ writer: 1, config });
  if ((await fsp.readFile(marker, 'utf8').catch(() => undefined)) === want) return file;
  const infos = llamaGgufTensorInfos(config, 'F16');
  const total = infos.reduce((sum, t) => sum + t.bytes, 0);
  await fsp.mkdir(dir, { recursive: true });
  const free = fs.statfsSync(dir);
  if (free.bavail * free.bsize < total * 1.05) throw new Error(`${path.basename(dir)} needs ${formatBytes(total)} under ${dir}; ${formatBytes(free.bavail * free.bsize)} are free`);
  const tokenizerJson = path.join(sharedDir(), 'models', 'ref-6m', 'tokenizer.json');
  const T = GGUF_TYPE;
  const metadata: GgufKv[] = [
    ...ggufModelMetadata(config, 'random-f16'),
    ['general.file_type', T.U32, 1],
    ['llama.attention.key_length', T.U32, config.headDim],
    ['llama.attention.value_length', T.U32, config.headDim],
    ['llama.rope.dimension_count', T.U32, config.headDim],
    ['llama.vocab_size', T.U32, config.vocabSize],
    ...(await ggufTokenizerMetadata({ tokenizerJson, pre: 'smollm', bos: 0, eos: 0 }, config.vocabSize)),
  ];
  const bar = new Progress({ total, label: `writing ${path.basename(dir)}`, unit: 'B' });
  await fsp.rm(marker, { force: true });
  await writeGgufTensors(file, { metadata }, infos, (t) => {
    bar.tick(t.bytes);
    if (t.type === GGML.F32) return new Uint8Array(new Float32Array(t.bytes / 4).fill(1).buffer); // norms
    // random sign and mantissa at exponent 2^-6: |w| in [0.016, 0.031), like a trained model's scale
    const h = new Uint16Array(t.bytes / 2);
    crypto.randomFillSync(h);
    for (let i = 0; i < h.length; i++) h[i] = (h[i]! & 0x83ff) | 0x2400;
    return new Uint8Array(h.buffer);
  });
  bar.done();
  await fsp.writeFile(marker, want);
  return file;
}

async function millionTokens(ctx: BenchContext): Promise<Table> {
  const bench = await ctx.model(MODEL_SPECS.find((m) => m.id === '135m-f16')!);
  const tokens = ctx.options.quick ? 2 ** 16 : MILLION;
  const threads = Math.max(...ctx.options.threads);
  const header = await readModelHeader(bench.gguf);
  const rows: Table['rows'] = [];
  const fp16 = planMemory(header, { context: tokens, cache: 'full+fp16', threads });
  let refusal = 'fits (not refused)';
  try {
    checkPlan(fp16);
  } catch (e) {
    refusal = (e as Error).message;
  }
  rows.push({ cache: 'full+fp16', kvGiB: fp16.kvBytes / 2 ** 30, memories: fp16.memories, tokS: null, needle: refusal.replace(/^.*?: /, 'refused: ') });
  for (const cache of LONG_CACHES) {
    const model = await loadModel(bench.gguf, { threads, context: tokens, cache });
    try {
      (model.config as { maxContext: number }).maxContext = tokens + 64; // the synthetic tokens are past the trained context
      const session = model.session({ cache, chunkSize: 1, context: tokens + 64 });
      const depth = 0.37;
      const needle = fillWithNeedle(model, session, tokens, Math.floor(depth * tokens));
      const decodeTokens = ctx.options.quick ? 2 : 4;
      const tokS = decodeRate(session, [bench.firstPlainToken], decodeTokens);
      const value = needle();
      rows.push({ cache, kvGiB: session.cache.bytes() / 2 ** 30, memories: model.weights.groups.count, tokS, needle: `depth ${depth}: output ${value.toFixed(3)} (${value > 0.9 ? 'found' : 'missed'})` });
      session.dispose();
    } finally {
      await model.close();
    }
    ctx.log(`1M tokens, ${cache}: done`);
  }
  return {
    title: `SmolLM2-135M shape holding ${tokens} tokens (${threads} threads)`,
    columns: [
      { key: 'cache', header: 'cache' },
      { key: 'kvGiB', header: 'KV GiB', format: formatNumber },
      { key: 'memories', header: 'kernel memories', format: String },
      { key: 'tokS', header: 'decode tok/s' },
      { key: 'needle', header: 'needle / plan' },
    ],
    rows,
    notes: [
      'The cache is filled with synthetic rows (uniform keys and values in [-1, 1)) stored without attending; decoding then attends over all of them.',
      'Needle: in layer 0, KV head 0, the key at the depth lies along (after RoPE) the query of a token after the last (query ±4 per',
      "dimension, key = query/4, inside the random keys' range) and its value is all ones; output is the mean of that query head's",
      'attention output: 1 when the attention went to the needle, about 0 when it spread over the random tokens.',
    ],
  };
}

/**
 * Fills every layer with `tokens` synthetic tokens, planting in layer 0 (KV head 0) at position
 * `slot` a key that RoPE turns into a quarter of the query of a token at position `tokens`, with a
 * value of all ones. Returns the check: that query's attention over the cache (appending it to layer
 * 0 only, so run it last), the mean of query head 0's output.
 */
function fillWithNeedle(model: Model, session: ReturnType<Model['session']>, tokens: number, slot: number): () => number {
  const c = model.config;
  const k = model.kernels; // layer 0's memory
  const d = c.headDim;
  const row = c.numKvHeads * d;
  const pool = Float32Array.from({ length: 2 * FILL_CHUNK * row }, () => Math.random() * 2 - 1);
  const query = Float32Array.from({ length: d }, () => (Math.random() < 0.5 ? -4 : 4));
  const rotated = (x: Float32Array, position: number): Float32Array => {
    const [buf, pos] = [k.arena.alloc(d * 4), k.arena.alloc(4)];
    k.arena.f32(buf, d).set(x);
    k.arena.i32(pos, 1)[0] = position;
    k.rope(buf, 1, 1, pos, ropeOf(c));
    const out = k.arena.f32(buf, d).slice();
    for (const p of [buf, pos]) k.arena.free(p);
    return out;
  };
  const bar = new Progress({ total: c.numLayers * tokens, label: 'filling the cache', unit: 'tok' });
  const positions = new Int32Array(FILL_CHUNK);
  for (let l = 0; l < c.numLayers; l++) {
    for (let from = 0; from < tokens; from += FILL_CHUNK) {
      for (let i = 0; i < FILL_CHUNK; i++) positions[i] = from + i;
      const offset = ((from / FILL_CHUNK) % FILL_CHUNK) * row;
      const keys = pool.slice(offset, offset + FILL_CHUNK * row);
      const values = pool.slice(offset + row, offset + row + FILL_CHUNK * row);
      if (l === 0 && slot >= from && slot < from + FILL_CHUNK) {
        // stored before RoPE: turned by `slot` on write or read, it becomes the query turned by `tokens`, over 4
        const at = (slot - from) * row;
        keys.set(rotated(query, tokens - slot).map((x) => x / 4), at);
        values.fill(1, at, at + d);
      }
      session.cache.appendRows(l, keys, values, positions);
      bar.tick(FILL_CHUNK);
    }
  }
  bar.done();
  for (let i = 0; i < tokens; i++) session.tokens.push(0);
  return () => {
    const qDim = c.numHeads * d;
    const [q, kv, out, pos] = [k.arena.alloc(qDim * 4), k.arena.alloc(row * 4 * 2), k.arena.alloc(qDim * 4), k.arena.alloc(4)];
    const at = session.cache.layerLengths()[0]!;
    const qs = k.arena.f32(q, qDim);
    qs.set(pool.subarray(0, qDim));
    qs.set(rotated(query, tokens), 0); // query head 0 reads KV head 0
    k.arena.f32(kv, 2 * row).set(pool.subarray(0, 2 * row));
    k.arena.i32(pos, 1)[0] = at;
    session.cache.attend(0, q, kv, kv + row * 4, Int32Array.of(at), pos, 1, out);
    const head = k.arena.f32(out, d);
    const value = head.reduce((a, b) => a + b, 0) / d;
    for (const p of [q, kv, out, pos]) k.arena.free(p);
    return value;
  };
}
