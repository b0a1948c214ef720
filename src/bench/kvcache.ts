import os from 'node:os';
import type { LlamaModel, Token } from 'node-llama-cpp';
import { ATTENTION_MODES, type AttentionMode, type Codec } from '../cache/codec.js';
import { buildCache, createCache } from '../cache/build.js';
import { parseSpec } from '../cache/registry.js';
import { Activations, forward } from '../model/forward.js';
import type { ModelConfig } from '../model/config.js';
import type { Kernels } from '../kernels/api.js';
import { loadModel } from '../engine/model.js';
import type { BenchContext, Section, SectionResult } from './section.js';
import { MODEL_SPECS } from './models.js';
import { readBandwidth, rooflineShare } from './bandwidth.js';
import { formatRatio, formatShare, median, type Table } from './table.js';

/**
 * Decode speed and bytes per token of the KV codecs with a long cache, on the SmolLM2-135M shape
 * (random f16 weights, GGUF), beside llama.cpp with f16 KV (q8_0 and q4_0 on request) and flash
 * attention on. Packed codecs (int, kvquant, turboquant) run with each attention mode, exact and fast;
 * each row says its speed over kvpack fp16's at the same length and the load average when it was measured.
 *
 * kvpack: the cache is filled once per codec with synthetic keys and values (Gaussian-like, a few wide
 * channels) by the codec's own write path, to the longest length; then `decode` single-token forward
 * passes are timed at each cached length (the length is set back before every run) and in each
 * attention mode. llama.cpp has no such back door, so its cache is filled by a real prefill of random
 * tokens (untimed, and slow: ~10 minutes for 32K on 2 cores), once per KV type: the prefill to the
 * shortest length, its timed steps (then erased), the prefill continued to the next length, and so on.
 * The timed part is the same number of single-token steps, by the wall clock (tok/s) and by the
 * process's CPU time (CPU ms/token: steadier when other work shares the machine). Bytes per token: kvpack's `cache.bytes()`
 * (codes, scales, outliers, tables, and slot indices where the codec reads positions) over the length;
 * llama.cpp's from its block formats (f16 2 bytes, q8_0 34 and q4_0 18 bytes per 32 numbers).
 *
 * The default run (under 15 minutes on a quiet 2-core machine, llama.cpp's prefill most of it): fp16,
 * int(bits=4), kvquant(bits=3) and kvquant(bits=2) at 16K and 32K cached tokens; the newer codecs
 * (int(bits=4,rotate=hadamard), turboquant(bits=4), turboquant(kbits=3,vbits=4)) at the shortest length
 * only (16K). KVPACK_BENCH_KV_SIZES=4096,16384 overrides the lengths (default 16384,32768; --quick: 4096);
 * KVPACK_BENCH_NO_LLAMA=1 skips llama.cpp, KVPACK_BENCH_NO_KVPACK=1 kvpack; KVPACK_BENCH_KV_CODECS='fp16;int(bits=8)'
 * (then every codec named runs at every length), KVPACK_BENCH_LLAMA_KV=F16,Q8_0 (default F16) and
 * KVPACK_BENCH_ATTENTION=fast (default exact,fast) keep only the codecs / llama.cpp KV types / modes named.
 */

const CODECS = [
  'fp32', 'fp16', 'int(bits=8)', 'int(bits=4)', 'kvquant(bits=3)', 'kvquant(bits=2)',
  'int(bits=4,rotate=hadamard)', 'turboquant(kbits=8,vbits=4)', 'turboquant(bits=4)', 'turboquant(kbits=3,vbits=4)', 'turboquant(bits=3)',
];
const DEFAULT_CODECS = ['fp16', 'int(bits=4)', 'kvquant(bits=3)', 'kvquant(bits=2)'];
/** Codecs of the default run measured at the shortest length only (their speed at 16K; keeps the run short). */
const SHORTEST_ONLY = ['int(bits=4,rotate=hadamard)', 'turboquant(bits=4)', 'turboquant(kbits=3,vbits=4)'];
const LLAMA_KV = [
  ['F16', 2],
  ['Q8_0', 34 / 32],
  ['Q4_0', 18 / 32],
] as const;

/** Steps of the warm-up run before each row's timed runs (the code is compiled and the cache read by then). */
const WARM_STEPS = 4;

/** Codecs that store packed codes, whose attention has an exact and a fast mode. */
const packed = (spec: string): boolean => /^(int|kvquant|turboquant)\(/.test(spec);

/** The entries of `all` named in env var `name` (separated by `sep`), or those of `fallback` (default all) when it is unset. */
function chosen<T>(all: readonly T[], name: string, sep: string, key: (t: T) => string, fallback: readonly string[] = all.map(key)): T[] {
  const env = process.env[name];
  if (!env) return all.filter((t) => fallback.includes(key(t)));
  const wanted = env.split(sep).map((s) => s.trim());
  const unknown = wanted.filter((w) => !all.some((t) => key(t) === w));
  if (unknown.length) throw new Error(`${name}: unknown ${unknown.join(', ')} (known: ${all.map(key).join(', ')})`);
  return all.filter((t) => wanted.includes(key(t)));
}

function sizes(quick: boolean): number[] {
  const env = process.env.KVPACK_BENCH_KV_SIZES;
  if (env) return env.split(',').map((s) => Number(s.trim())).filter((n) => Number.isInteger(n) && n > 0);
  return quick ? [4096] : [16384, 32768];
}

/** Milliseconds of this process's CPU time (all threads) since `from` (a process.cpuUsage()). */
function cpuMs(from: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(from);
  return (u.user + u.system) / 1000;
}

/** Deterministic Gaussian-like numbers (sum of 4 uniforms), wider in a few channels like real keys. */
export function synthetic(len: number, d: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const u = (): number => {
    a = (Math.imul(a ^ (a >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return a / 4294967296;
  };
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) out[i] = (u() + u() + u() + u() - 2) * (i % d < 4 ? 6 : 1);
  return out;
}

/**
 * Writes `len` tokens of synthetic keys and values (positions 0…len−1) into every layer of a codec through
 * its own write path, 512 at a time, without attending: how the kvcache bench and the scripts'
 * micro-benchmarks fill a long cache.
 */
export function fillSynthetic(k: Kernels, codec: Codec, c: ModelConfig, len: number): void {
  const chunk = 512;
  const width = chunk * c.numKvHeads * c.headDim;
  const kp = k.arena.alloc(width * 4);
  const vp = k.arena.alloc(width * 4);
  const pp = k.arena.alloc(chunk * 4);
  const keys = synthetic(width, c.headDim, 1);
  const values = synthetic(width, c.headDim, 2);
  try {
    for (let l = 0; l < c.numLayers; l++) {
      for (let from = 0; from < len; from += chunk) {
        const n = Math.min(chunk, len - from);
        k.arena.f32(kp, width).set(keys);
        k.arena.f32(vp, width).set(values);
        k.arena.i32(pp, n).set(Int32Array.from({ length: n }, (_, i) => from + i));
        codec.write(l, from, n, kp, vp, pp);
      }
    }
  } finally {
    for (const p of [kp, vp, pp]) k.arena.free(p);
  }
}

interface Row {
  engine: string;
  kv: string;
  attention: AttentionMode | '—';
  tokens: number;
  bytesPerToken: number;
  tokPerS: number;
  /** The process's CPU time per decoded token (all its threads, llama.cpp's included): steadier than tok/s on a busy machine. */
  cpuMs: number;
  /** The 1-minute load average after the row's runs. */
  load: number;
}

async function kvpackRows(ctx: BenchContext, file: string, threads: number, lengths: number[], steps: number): Promise<{ rows: Row[]; config: ModelConfig; weightBytes: number }> {
  const model = await loadModel(file, { threads });
  const k = model.kernels;
  const c = model.config;
  const rows: Row[] = [];
  try {
    const named = process.env.KVPACK_BENCH_KV_CODECS !== undefined;
    const specs = process.env.KVPACK_BENCH_NO_KVPACK ? [] : chosen(CODECS, 'KVPACK_BENCH_KV_CODECS', ';', (c) => c, [...DEFAULT_CODECS, ...SHORTEST_ONLY]);
    const modes = chosen(ATTENTION_MODES, 'KVPACK_BENCH_ATTENTION', ',', (m) => m);
    for (const codecSpec of specs) {
      const at = !named && SHORTEST_ONLY.includes(codecSpec) ? [Math.min(...lengths)] : lengths;
      const fill = Math.max(...at);
      ctx.log(`kvcache: kvpack ${codecSpec}: filling ${fill} tokens`);
      const cache = createCache(k, c, parseSpec(`full+${codecSpec}`), fill + steps + 8);
      // The cache's own fields, reached around its API: the bench writes tokens without attending, and
      // switches the attention mode of one filled cache (a codec reads ctx.attention at every call).
      const raw = cache as unknown as { lengths: number[]; codec: Codec & { ctx?: { attention?: AttentionMode } } };
      fillSynthetic(k, raw.codec, c, fill);
      const activations = new Activations(model.weights, c, 1);
      for (const attention of packed(codecSpec) ? modes : (['—'] as const)) {
        if (attention !== '—') {
          if (!raw.codec.ctx) throw new Error(`internal: kvcache bench: ${codecSpec} has no attention mode to set`);
          // a codec refuses a mode it cannot run when it is built: built once more, with one slot, to ask it
          buildCache(k, c, parseSpec(`full+${codecSpec}`), 1, { attention }).codec.free();
          raw.codec.ctx.attention = attention;
        }
        for (const n of at) {
          const times: number[] = [];
          const cpu: number[] = [];
          let bytes = 0;
          for (let run = 0; run <= ctx.options.runs; run++) {
            raw.lengths.fill(n);
            bytes = cache.bytes();
            const t0 = performance.now();
            const c0 = process.cpuUsage();
            for (let i = 0; i < (run === 0 ? WARM_STEPS : steps); i++) forward(c, model.weights, activations, cache, [100 + i], [n + i], false);
            if (run > 0) {
              // run 0 warms up
              times.push(performance.now() - t0);
              cpu.push(cpuMs(c0) / steps);
            }
          }
          rows.push({
            engine: 'kvpack', kv: codecSpec, attention, tokens: n, bytesPerToken: bytes / n, tokPerS: (steps * 1000) / median(times), cpuMs: median(cpu),
            load: os.loadavg()[0]!,
          });
          ctx.log(`kvcache: kvpack ${codecSpec} ${attention} @${n}: ${rows[rows.length - 1]!.tokPerS.toFixed(1)} tok/s`);
        }
      }
      activations.free();
      cache.free();
    }
  } finally {
    await model.close();
  }
  return { rows, config: c, weightBytes: model.weights.bytes };
}

async function llamaRows(ctx: BenchContext, file: string, c: ModelConfig, threads: number, lengths: number[], steps: number, firstPlain: number, vocab: number): Promise<Row[]> {
  const llama = await ctx.llama();
  const model: LlamaModel = await llama.loadModel(file);
  const rows: Row[] = [];
  try {
    for (const [type, bytesPerNumber] of chosen(LLAMA_KV, 'KVPACK_BENCH_LLAMA_KV', ',', ([t]) => t, ['F16'])) {
      const maxN = Math.max(...lengths);
      const context = await model.createContext({
        contextSize: maxN + steps + 16, batchSize: 512, threads, flashAttention: true, sequences: 1,
        experimentalKvCacheKeyType: type, experimentalKvCacheValueType: type,
      });
      try {
        const seq = context.getSequence();
        const prompt = Array.from({ length: maxN }, (_, i) => (firstPlain + ((i * 7919) % (vocab - firstPlain))) as Token);
        // one prefill, continued from each length to the next: the sequence holds n − 1 prompt tokens when step n is timed
        for (const n of [...lengths].sort((x, y) => x - y)) {
          ctx.log(`kvcache: llama.cpp ${type} KV: prefilling to ${n} tokens (untimed)`);
          await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(seq.nextTokenIndex, n - 1));
          const times: number[] = [];
          const cpu: number[] = [];
          for (let run = 0; run <= ctx.options.runs; run++) {
            let produced = 0;
            const t0 = performance.now();
            const c0 = process.cpuUsage();
            for await (const _ of seq.evaluate([prompt[n - 1]!], { temperature: 0, yieldEogToken: true })) {
              if (++produced >= (run === 0 ? WARM_STEPS : steps)) break;
            }
            if (run > 0) {
              times.push(performance.now() - t0);
              cpu.push(cpuMs(c0) / steps);
            }
            await seq.eraseContextTokenRanges([{ start: n - 1, end: seq.nextTokenIndex }]);
          }
          const perToken = c.numLayers * c.numKvHeads * c.headDim * 2 * bytesPerNumber;
          rows.push({ engine: 'llama.cpp', kv: type.toLowerCase(), attention: '—', tokens: n, bytesPerToken: perToken, tokPerS: (steps * 1000) / median(times), cpuMs: median(cpu), load: os.loadavg()[0]! });
          ctx.log(`kvcache: llama.cpp ${type} @${n}: ${rows[rows.length - 1]!.tokPerS.toFixed(1)} tok/s`);
        }
      } finally {
        await context.dispose();
      }
    }
  } finally {
    await model.dispose();
  }
  return rows;
}

export const kvcacheSection: Section = {
  id: 'kvcache',
  describe: 'KV codecs at long context (SmolLM2-135M shape): bytes/token and decode tok/s at 16K and 32K (newer codecs at 16K), exact and fast attention, vs llama.cpp f16 KV (~15 min: llama.cpp prefills 32K)',
  defaultOn: false,
  async run(ctx): Promise<SectionResult> {
    const spec = MODEL_SPECS.find((m) => m.id === '135m-f16')!;
    const bm = await ctx.model(spec);
    const threads = Math.max(...ctx.options.threads);
    const bandwidth = await readBandwidth(threads);
    const lengths = sizes(ctx.options.quick);
    const steps = ctx.options.quick ? 4 : 16;
    const ours = await kvpackRows(ctx, bm.gguf, threads, lengths, steps);
    const rows = [
      ...ours.rows,
      ...(process.env.KVPACK_BENCH_NO_LLAMA ? [] : await llamaRows(ctx, bm.gguf, ours.config, threads, lengths, steps, bm.firstPlainToken, bm.vocabSize)),
    ];
    const table: Table = {
      title: `KV cache codecs at long context: ${spec.label}, ${threads} threads, ${steps} decode steps per run`,
      columns: [
        { key: 'engine', header: 'engine' },
        { key: 'kv', header: 'KV storage' },
        { key: 'attention', header: 'attention' },
        { key: 'tokens', header: 'cached tokens', format: String },
        { key: 'bytesPerToken', header: 'bytes/token', format: (v) => v.toFixed(0) },
        { key: 'tokPerS', header: 'decode tok/s' },
        { key: 'vsFp16', header: '× kvpack fp16', format: formatRatio },
        { key: 'cpuMs', header: 'CPU ms/token', format: (v) => v.toFixed(1) },
        { key: 'cpuVsFp16', header: 'CPU × kvpack fp16', format: formatRatio },
        { key: 'roofline', header: '% read bw', format: formatShare },
        { key: 'load', header: 'load (1 min)', format: (v) => v.toFixed(1) },
      ],
      // both engines read the same GGUF weights each step, plus the KV they hold
      rows: rows.map((r) => {
        const fp16 = rows.find((o) => o.engine === 'kvpack' && o.kv === 'fp16' && o.tokens === r.tokens);
        return { ...r, vsFp16: fp16 ? r.tokPerS / fp16.tokPerS : null, cpuVsFp16: fp16 ? fp16.cpuMs / r.cpuMs : null, roofline: rooflineShare(ours.weightBytes + r.bytesPerToken * r.tokens, r.tokPerS, bandwidth) };
      }),
      notes: [
        'kvpack caches are filled with synthetic keys/values through each codec\'s write path; llama.cpp\'s by an untimed prefill of random tokens (flash attention on).',
        'attention: exact decodes packed codes to f32; fast takes integer dot products on rounded queries and weights (docs/quantization.md has its accuracy).',
        'load (1 min): the machine\'s load average after the row\'s runs; other work on the machine slows every row.',
        'CPU ms/token: the process\'s CPU time (all threads) per decoded token, median of the runs; CPU × kvpack fp16 is fp16\'s over the row\'s. Other work slows it less than the wall clock, so on a busy machine it is the column to compare kvpack\'s rows by (threads waiting on each other count too; llama.cpp\'s threads spin while they wait, so its CPU time is no measure of its speed).',
        'bytes/token: kvpack counts everything it stores (codes, scales, zeros, outliers, LUTs, slot indices where read); llama.cpp from its block formats.',
        `% read bw (roofline): (weights + bytes/token × cached tokens) × decode tok/s over the read bandwidth the streaming-read kernel reached in this run at ${threads} threads (${(bandwidth / 1e9).toFixed(1)} GB/s).`,
      ],
    };
    return { tables: [table], data: rows };
  },
};
