import { parseSpec, printSpec } from '../cache/registry.js';
import { kernelBuild } from '../kernels/index.js';
import { readModelInfo } from '../engine/model.js';
import type { ModelConfig } from '../model/config.js';
import { formatBytes } from '../util/progress.js';
import { cacheBitsPerValue, checkPlan, planRows } from '../model/plan.js';
import { attentionOption, MODEL_HELP, MODEL_OPTIONS, noPositionals, parse } from './args.js';
import { modelPathFromOptions, planFromOptions } from './load.js';

const HELP = `Usage: kvpack info [--model M] [--tokenizer F] [--cache SPEC] [--ctx N] [--json] [--threads K]

Architecture, parameter count, weight dtypes and KV-cache bytes per token of a model; with --cache,
the codec's stored bits per key/value number (scales, zeros, LUTs and outliers counted). Everything
comes from the model's header: no weight is read, so a 13 GB file answers at once (a calibration
file a spec names is read and checked when a command runs the model).
With --ctx, first the memory plan: weights, KV cache at N tokens of the spec and scratch against
the memory available; a plan that does not fit stops there (non-zero exit) with the longest context
that would fit.
${MODEL_HELP}
  --cache SPEC     also the bits per value of this cache's codec on this model
  --ctx N          print the memory plan for N tokens of the cache first
  --json           print one JSON object
`;

/** The options `kvpack info` takes (its --help lists each). */
export const OPTIONS = { ...MODEL_OPTIONS, json: { type: 'boolean' }, cache: { type: 'string' }, ctx: { type: 'string' } } as const;

export async function infoCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('info', argv, OPTIONS);
  noPositionals('info', positionals, ' (use --model FILE)');
  if (values.help) return void process.stdout.write(HELP);
  attentionOption(values.attention); // refused here as where a model runs (info runs none)
  const plan = values.ctx === undefined ? undefined : await planFromOptions(values);
  if (plan && !values.json) for (const [k, v] of planRows(plan)) process.stdout.write(`${k.padEnd(16)} ${v}\n`);
  if (plan && !plan.fits) {
    if (values.json) process.stdout.write(`${JSON.stringify({ plan })}\n`);
    checkPlan(plan);
  }
  // everything below comes from the header: no weight is read (a 12 GiB model answers at once)
  const info = await readModelInfo(await modelPathFromOptions(values));
  const cache = values.cache === undefined ? undefined : cacheBits(info.config, values.cache);
  const kernels = await kernelBuild();
  if (values.json) return void process.stdout.write(`${JSON.stringify({ ...info, kernels, ...(cache && { cache }), ...(plan && { plan }) })}\n`);
  const c = info.config;
  const dtypes = Object.entries(info.dtypes).map(([d, n]) => `${d} ${(n / 1e6).toFixed(2)}M`).join(', ');
  const rows: [string, string][] = [
    ['model', info.source],
    ['format', info.format],
    ['architecture', `${c.architecture}: ${c.numLayers} layers, hidden ${c.hiddenSize}, ffn ${c.intermediateSize}`],
    ['attention', `${c.numHeads} heads, ${c.numKvHeads} KV heads (GQA ${c.numHeads / c.numKvHeads}), head_dim ${c.headDim}`],
    ['rope', `theta ${c.ropeTheta}, ${c.ropeLayout} layout`],
    ['vocabulary', String(c.vocabSize)],
    ['context', String(c.maxContext)],
    ['parameters', `${(info.parameters / 1e6).toFixed(2)}M (${dtypes})`],
    ['tensor types', Object.entries(info.tensorTypes).map(([d, n]) => `${d} ×${n}`).join(', ')],
    ['bits/weight', info.bitsPerWeight.toFixed(2)],
    ['weights', formatBytes(info.weightBytes)],
    ['KV bytes/token', `${info.kvBytesPerTokenF32} (f32), ${info.kvBytesPerTokenF16} (f16)`],
    ['kernels', `wasm, ${kernels === 'relaxed' ? 'relaxed SIMD' : 'SIMD128'} build (KVPACK_SIMD=simd128|relaxed forces one)`],
  ];
  if (cache) rows.push(['cache', `${cache.spec}: ${cache.bitsPerValue} bits per value, ${cache.kvBytesPerToken} KV bytes/token`]);
  for (const [k, v] of rows) process.stdout.write(`${k.padEnd(16)} ${v}\n`);
}

/**
 * Effective bits per stored number of a cache spec's codec (per slot, shared tables amortised away),
 * measured as the memory plan measures: the same builder as a session's, so what info accepts a
 * session runs (a calibration file it names is read and checked when a command runs the model).
 */
function cacheBits(c: ModelConfig, text: string) {
  const bits = cacheBitsPerValue(c, text);
  return { spec: printSpec(parseSpec(text)), bitsPerValue: Number(bits.toFixed(4)), kvBytesPerToken: (bits * 2 * c.numLayers * c.numKvHeads * c.headDim) / 8 };
}
