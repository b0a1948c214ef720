import { UsageError } from '../errors.js';

/**
 * The one cache spec grammar, used by every entry point:
 *   spec   := part ('+' part)?          a policy, a codec, or policy+codec
 *   part   := name ('(' param (',' param)* ')')?
 *   param  := key '=' value
 *   value  := number | true | false | word | '[' value (',' value)* ']' | "quoted string"
 * e.g. `h2o(budget=0.2,recent=0.05)+int(bits=4,group=64)`, `kvquant(bits=3)`, `full`.
 */

export type ParamValue = number | boolean | string | number[];

export type ParamType =
  | { kind: 'int'; min: number; max?: number }
  | { kind: 'number'; min: number; max?: number; exclusiveMin?: boolean }
  /** A token count (integer ≥ 1) or a fraction of the prompt (0 < x < 1); or a list of them, one per layer. */
  | { kind: 'budget' }
  | { kind: 'bool' }
  | { kind: 'enum'; values: readonly (string | number)[] }
  | { kind: 'string' }
  /** A number, or a list of numbers (one per layer). */
  | { kind: 'numbers'; min: number; max?: number };

export interface ParamSchema {
  type: ParamType;
  /** Omitted (and not `optional`): the parameter is required. */
  default?: ParamValue;
  /** May be left out with no default; the policy or codec decides what that means. */
  optional?: true;
  doc: string;
}

export interface PartSchema {
  name: string;
  doc: string;
  params: Record<string, ParamSchema>;
}

export interface SpecPart {
  name: string;
  /** Only the parameters written in the spec; defaults are filled in by `withDefaults`. */
  params: Record<string, ParamValue>;
}

export interface CacheSpec {
  policy: SpecPart;
  codec: SpecPart;
}

/** What the parser checks names and parameters against. */
export interface SpecRegistry {
  policies: Map<string, PartSchema>;
  codecs: Map<string, PartSchema>;
}

export const DEFAULT_POLICY: SpecPart = { name: 'full', params: {} };
export const DEFAULT_CODEC: SpecPart = { name: 'fp32', params: {} };

export function parseCacheSpec(text: string, registry: SpecRegistry): CacheSpec {
  const parts = splitTop(text.replace(/\s+/g, ''), '+', text);
  if (parts.length === 0 || parts.length > 2 || parts.some((p) => p === '')) {
    throw new UsageError(`cache spec "${text}": expected policy, codec, or policy+codec, e.g. h2o(budget=0.2)+int(bits=4)`);
  }
  const parsed = parts.map((p) => parsePart(p, text));
  let policy: SpecPart | undefined;
  let codec: SpecPart | undefined;
  for (const part of parsed) {
    if (registry.policies.has(part.name) && !policy && !codec) policy = part;
    else if (registry.codecs.has(part.name) && !codec) codec = part;
    else if (registry.policies.has(part.name) || registry.codecs.has(part.name)) {
      throw new UsageError(`cache spec "${text}": "${part.name}" is out of place; write the policy first, then +codec`);
    } else {
      throw new UsageError(
        `cache spec "${text}": unknown name "${part.name}"; policies: ${[...registry.policies.keys()].join(', ')}; codecs: ${[...registry.codecs.keys()].join(', ')}`,
      );
    }
  }
  const spec = { policy: policy ?? DEFAULT_POLICY, codec: codec ?? DEFAULT_CODEC };
  checkPart(spec.policy, registry.policies.get(spec.policy.name)!, text);
  checkPart(spec.codec, registry.codecs.get(spec.codec.name)!, text);
  return spec;
}

/** The canonical text of a spec: parameters in schema order, codec omitted when it is the default. */
export function printCacheSpec(spec: CacheSpec, registry: SpecRegistry): string {
  const policy = printPart(spec.policy, registry.policies.get(spec.policy.name));
  const isDefaultCodec = spec.codec.name === DEFAULT_CODEC.name && Object.keys(spec.codec.params).length === 0;
  return isDefaultCodec ? policy : `${policy}+${printPart(spec.codec, registry.codecs.get(spec.codec.name))}`;
}

/** The part's parameters with every default filled in. */
export function withDefaults(part: SpecPart, schema: PartSchema): Record<string, ParamValue> {
  const out: Record<string, ParamValue> = {};
  for (const [key, p] of Object.entries(schema.params)) {
    const v = part.params[key] ?? p.default;
    if (v !== undefined) out[key] = v;
  }
  return out;
}

function printPart(part: SpecPart, schema: PartSchema | undefined): string {
  const order = schema ? Object.keys(schema.params) : Object.keys(part.params);
  const items = order.filter((k) => part.params[k] !== undefined).map((k) => `${k}=${printValue(part.params[k]!)}`);
  return items.length ? `${part.name}(${items.join(',')})` : part.name;
}

function printValue(v: ParamValue): string {
  if (Array.isArray(v)) return `[${v.join(',')}]`;
  if (typeof v === 'string') return /^[A-Za-z_][\w.\-/]*$/.test(v) ? v : JSON.stringify(v);
  return String(v);
}

function parsePart(text: string, whole: string): SpecPart {
  const m = /^([A-Za-z_][\w-]*)(?:\((.*)\))?$/s.exec(text);
  if (!m) throw new UsageError(`cache spec "${whole}": cannot read "${text}"; expected name or name(key=value,…)`);
  const params: Record<string, ParamValue> = {};
  if (m[2] !== undefined && m[2] !== '') {
    for (const item of splitTop(m[2], ',', whole)) {
      const eq = item.indexOf('=');
      if (eq <= 0) throw new UsageError(`cache spec "${whole}": "${item}" should be key=value`);
      const key = item.slice(0, eq);
      if (key in params) throw new UsageError(`cache spec "${whole}": ${key} is given twice`);
      params[key] = parseValue(item.slice(eq + 1), whole);
    }
  }
  return { name: m[1]!, params };
}

function parseValue(text: string, whole: string): ParamValue {
  if (text === 'true') return true;
  if (text === 'false') return false;
  if (text.startsWith('[')) {
    if (!text.endsWith(']')) throw new UsageError(`cache spec "${whole}": unclosed list "${text}"`);
    return splitTop(text.slice(1, -1), ',', whole).map((t) => {
      const n = Number(t);
      if (t === '' || !Number.isFinite(n)) throw new UsageError(`cache spec "${whole}": list item "${t}" is not a number`);
      return n;
    });
  }
  if (text.startsWith('"')) {
    try {
      return JSON.parse(text) as string;
    } catch {
      throw new UsageError(`cache spec "${whole}": bad quoted string ${text}`);
    }
  }
  const n = Number(text);
  if (text !== '' && Number.isFinite(n)) return n;
  if (/^[A-Za-z_][\w.\-/]*$/.test(text)) return text;
  throw new UsageError(`cache spec "${whole}": cannot read value "${text}"`);
}

/** Splits on `sep` outside brackets, parentheses and quotes. */
function splitTop(text: string, sep: string, whole: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"' && text[i - 1] !== '\\') quoted = !quoted;
    if (quoted) continue;
    if (ch === '(' || ch === '[') depth++;
    else if (ch === ')' || ch === ']') depth--;
    if (depth < 0) throw new UsageError(`cache spec "${whole}": unbalanced "${ch}"`);
    if (ch === sep && depth === 0) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0 || quoted) throw new UsageError(`cache spec "${whole}": unbalanced brackets or quotes`);
  out.push(text.slice(start));
  return out;
}

function checkPart(part: SpecPart, schema: PartSchema, whole: string): void {
  const allowed = Object.keys(schema.params);
  for (const [key, value] of Object.entries(part.params)) {
    const p = schema.params[key];
    if (!p) {
      throw new UsageError(
        `cache spec "${whole}": ${part.name} has no parameter "${key}"; allowed: ${allowed.length ? allowed.join(', ') : '(none)'}`,
      );
    }
    const problem = checkValue(value, p.type);
    if (problem) throw new UsageError(`cache spec "${whole}": ${part.name}(${key}=…) ${problem}`);
  }
  for (const [key, p] of Object.entries(schema.params)) {
    if (p.default === undefined && !p.optional && part.params[key] === undefined) {
      throw new UsageError(`cache spec "${whole}": ${part.name} needs ${key} (${p.doc})`);
    }
  }
}

function checkValue(v: ParamValue, t: ParamType): string | undefined {
  const range = (min: number, max?: number) => (max === undefined ? `≥ ${min}` : `in [${min}, ${max}]`);
  switch (t.kind) {
    case 'int':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < t.min || (t.max !== undefined && v > t.max)) {
        return `must be an integer ${range(t.min, t.max)}, got ${printValue(v)}`;
      }
      return;
    case 'number':
      if (typeof v !== 'number' || v < t.min || (t.exclusiveMin && v === t.min) || (t.max !== undefined && v > t.max)) {
        return `must be a number ${t.exclusiveMin ? `> ${t.min}` : range(t.min, t.max)}${t.exclusiveMin && t.max !== undefined ? ` and ≤ ${t.max}` : ''}, got ${printValue(v)}`;
      }
      return;
    case 'budget': {
      const list = Array.isArray(v) ? v : [v];
      if (list.length === 0 || list.some((x) => typeof x !== 'number' || !(x > 0) || (x >= 1 && !Number.isInteger(x)))) {
        return `must be a token count (integer ≥ 1) or a fraction of the prompt in (0, 1), or a list of them per layer, got ${printValue(v)}`;
      }
      return;
    }
    case 'bool':
      return typeof v === 'boolean' ? undefined : `must be true or false, got ${printValue(v)}`;
    case 'enum':
      return t.values.includes(v as string | number) ? undefined : `must be one of ${t.values.join(', ')}, got ${printValue(v)}`;
    case 'string':
      return typeof v === 'string' ? undefined : `must be a name or a quoted string, got ${printValue(v)}`;
    case 'numbers': {
      const list = Array.isArray(v) ? v : typeof v === 'number' ? [v] : undefined;
      if (!list || list.length === 0 || list.some((x) => x < t.min || (t.max !== undefined && x > t.max))) {
        return `must be a number or a list of numbers ${range(t.min, t.max)}, got ${printValue(v)}`;
      }
      return;
    }
  }
}
