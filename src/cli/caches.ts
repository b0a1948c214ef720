import { UsageError } from '../errors.js';
import { CODECS, POLICIES } from '../cache/registry.js';
import { DEFAULT_CODEC, type PartSchema } from '../cache/spec.js';
import type { Param } from '../util/schema.js';
import { parse } from './args.js';

const HELP = `Usage: kvpack caches [NAME]… [--json]

Every policy and codec a cache spec may name (policy(k=v,…)+codec(k=v,…)), each with its
parameters, their defaults and the values they take, and the paper the method comes from;
with NAMEs, only those. Read from the same schemas that check every spec, so it is always current.
  --json           print one JSON object per policy or codec, one a line
  -h, --help       this text
`;

/** The options `kvpack caches` takes (its --help lists each). */
export const OPTIONS = { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } as const;

export interface KindDescription {
  kind: 'policy' | 'codec';
  name: string;
  doc: string;
  paper?: string;
  params: { name: string; default?: unknown; required: boolean; range?: string; doc: string }[];
}

/** Every policy and codec kind as its schema declares it. */
export function describeKinds(): KindDescription[] {
  const describe = (kind: KindDescription['kind'], s: PartSchema): KindDescription => ({
    kind,
    name: s.name,
    doc: s.doc,
    ...(s.paper && { paper: s.paper }),
    params: Object.entries(s.params).map(([name, p]: [string, Param<unknown>]) => ({
      name,
      ...(p.default !== undefined && { default: p.default }),
      required: p.default === undefined && !p.optional,
      ...(p.range && { range: p.range }),
      doc: p.doc,
    })),
  });
  return [...[...POLICIES.values()].map((k) => describe('policy', k.schema)), ...[...CODECS.values()].map((k) => describe('codec', k.schema))];
}

function render(k: KindDescription): string {
  const isDefault = k.kind === 'codec' && k.name === DEFAULT_CODEC.name ? ' (the default codec)' : '';
  const lines = [`${k.name}${isDefault} — ${k.doc}`];
  if (k.paper) lines.push(`  paper: ${k.paper}`);
  if (k.params.length === 0) lines.push('  no parameters');
  for (const p of k.params) {
    const value = p.default !== undefined ? `=${Array.isArray(p.default) ? `[${p.default.join(',')}]` : String(p.default)}` : p.required ? ' (required)' : ' (optional)';
    lines.push(`  ${`${p.name}${value}`.padEnd(22)} ${p.doc}`);
    if (p.range) lines.push(`  ${''.padEnd(22)} ${p.range}`);
  }
  return lines.join('\n');
}

export async function cachesCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('caches', argv, OPTIONS);
  if (values.help) return void process.stdout.write(HELP);
  const all = describeKinds();
  const unknown = positionals.filter((n) => !all.some((k) => k.name === n));
  if (unknown.length) throw new UsageError(`no policy or codec named ${unknown.map((n) => `"${n}"`).join(', ')}; policies: ${[...POLICIES.keys()].join(', ')}; codecs: ${[...CODECS.keys()].join(', ')}`);
  const chosen = positionals.length ? all.filter((k) => positionals.includes(k.name)) : all;
  if (values.json) return void process.stdout.write(chosen.map((k) => `${JSON.stringify(k)}\n`).join(''));
  const section = (kind: KindDescription['kind'], title: string) => {
    const kinds = chosen.filter((k) => k.kind === kind);
    return kinds.length ? [`${title}\n`, ...kinds.map((k) => `${render(k)}\n`)] : [];
  };
  process.stdout.write([
    ...section('policy', 'Policies: which tokens each layer and KV head keeps (spec: policy(k=v,…); default full)'),
    ...section('codec', 'Codecs: how the kept tokens are stored (spec: +codec(k=v,…); default fp16)'),
  ].join('\n'));
}
