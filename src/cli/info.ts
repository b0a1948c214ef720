import { formatBytes } from '../util/progress.js';
import { MODEL_OPTIONS, parse } from './args.js';
import { loadModelFromOptions } from './load.js';

const HELP = `Usage: kvpack info [--model M] [--json]

Architecture, parameter count, weight dtypes and KV-cache bytes per token of a model.
`;

export async function infoCommand(argv: string[]): Promise<void> {
  const { values } = parse('info', argv, { ...MODEL_OPTIONS, json: { type: 'boolean' } });
  if (values.help) return void process.stdout.write(HELP);
  const model = await loadModelFromOptions(values);
  try {
    const info = model.info();
    if (values.json) return void process.stdout.write(`${JSON.stringify(info)}\n`);
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
      ['weights', formatBytes(info.weightBytes)],
      ['KV bytes/token', `${info.kvBytesPerTokenF32} (f32), ${info.kvBytesPerTokenF16} (f16)`],
    ];
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(16)} ${v}\n`);
  } finally {
    await model.close();
  }
}
