import { UsageError } from '../errors.js';
import { applyDefaults, findIssue, type Infer, type Params, type ParamValue } from '../util/schema.js';

/**
 * The one cache spec grammar, used by every entry point:
 *   spec   := part ('+' part)?          a policy, a codec, or policy+codec
 *   part   := name ('(' param (',' param)* ')')?
 *   param  := key '=' value
 *   value  := number | true | false | word | '[' value (',' value)* ']' | "quoted string"
 *   word   := letters, digits and _ . - / ~ (a path such as /data/ref-6m.calib), not read as a number or boolean
 * e.g. `h2o(budget=0.2,recent=0.05)+int(bits=4,group=64)`, `kvquant(bits=3,calib=/data/ref.calib)`, `full`.
 * Whitespace outside quotes is ignored.
 */

export type { ParamValue };

/** A policy's or codec's name, doc and parameters (declared with the builders of util/schema.ts). */
export interface PartSchema<P extends Params = Params> {
  name: string;
  doc: string;
  /** The paper the method comes from (`kvpack caches` lists it); absent for baselines. */
  paper?: string;
  params: P;
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
  /** The codec a policy (its parameters checked) stores with when the spec names none; DEFAULT_CODEC when absent. */
  defaultCodec?(policy: SpecPart): SpecPart | undefined;
}

export const DEFAULT_POLICY: SpecPart = { name: 'full', params: {} };
/** What a spec without a codec stores: fp16, as llama.cpp, Hugging Face and the KV-compression papers do; `+fp32` is explicit. */
export const DEFAULT_CODEC: SpecPart = { name: 'fp16', params: {} };

export function parseCacheSpec(text: string, registry: SpecRegistry): CacheSpec {
  const parts = splitTop(stripSpaces(text), '+', text);
  if (parts.length === 0 || parts.length > 2 || parts.some((p) => p === '')) {
    throw new UsageError(`cache spec "${text}": expected policy, codec, or policy+codec, e.g. h2o(budget=0.2)+int(bits=4)`);
  }
  const parsed = parts.map((p) => parsePart(p, text));
  let policy: SpecPart | undefined;
  let codec: SpecPart | undefined;
  for (const { part } of parsed) {
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
  policy ??= DEFAULT_POLICY;
  checkPart(policy, registry.policies.get(policy.name)!, text);
  const spec = { policy, codec: codec ?? defaultCodec(policy, registry) };
  checkPart(spec.codec, registry.codecs.get(spec.codec.name)!, text);
  for (const { part, decimalIntegers } of parsed) checkTokenCounts(part, decimalIntegers, registry.policies.get(part.name), text);
  return spec;
}

/**
 * `budget=1.0` could mean one token or the whole prompt; kvpack reads neither into it: a token
 * parameter written with a decimal point must be a fraction below 1, a count is written as an integer.
 */
function checkTokenCounts(part: SpecPart, decimalIntegers: readonly string[], schema: PartSchema | undefined, whole: string): void {
  const key = decimalIntegers.find((k) => schema?.params[k]?.tokens);
  if (key === undefined) return;
  throw new UsageError(
    `cache spec "${whole}": ${part.name}(${key}=…) is ambiguous: a token count is written as an integer (${key}=1 keeps one token) and a fraction of the prompt lies below 1 (${key}=0.5); for every token use the full policy`,
  );
}

/**
 * The canonical text of a spec: parameters in schema order, the codec omitted only when it is the one
 * the policy stores with anyway (fp16, or qhitter's own int codec), so an explicit `+fp32` stays.
 */
export function printCacheSpec(spec: CacheSpec, registry: SpecRegistry): string {
  const policy = printPart(spec.policy, registry.policies.get(spec.policy.name));
  const codec = printPart(spec.codec, registry.codecs.get(spec.codec.name));
  const dflt = defaultCodec(spec.policy, registry);
  return codec === printPart(dflt, registry.codecs.get(dflt.name)) ? policy : `${policy}+${codec}`;
}

function defaultCodec(policy: SpecPart, registry: SpecRegistry): SpecPart {
  return registry.defaultCodec?.(policy) ?? DEFAULT_CODEC;
}

/** The part's parameters with every default filled in, typed by its schema. */
export function withDefaults<P extends Params>(part: SpecPart, schema: PartSchema<P>): Infer<P> {
  return applyDefaults(schema.params, part.params);
}

function printPart(part: SpecPart, schema: PartSchema | undefined): string {
  const order = schema ? Object.keys(schema.params) : Object.keys(part.params);
  const items = order.filter((k) => part.params[k] !== undefined).map((k) => `${k}=${printValue(part.params[k]!)}`);
  return items.length ? `${part.name}(${items.join(',')})` : part.name;
}

function printValue(v: ParamValue): string {
  if (Array.isArray(v)) return `[${v.join(',')}]`;
  if (typeof v === 'string') return isWord(v) ? v : JSON.stringify(v);
  return String(v);
}

/** A string that reads back as itself unquoted: word characters only, and not a number or a boolean. */
function isWord(text: string): boolean {
  return /^[\w.\-/~]+$/.test(text) && text !== 'true' && text !== 'false' && !Number.isFinite(Number(text));
}

/** The text without whitespace, except inside quoted strings. */
function stripSpaces(text: string): string {
  return text.replace(/"(?:[^"\\]|\\.)*"|\s+/g, (m) => (m.startsWith('"') ? m : ''));
}

/** A part, and the keys of values (or list items) written with a decimal point that are integers (`1.0`). */
function parsePart(text: string, whole: string): { part: SpecPart; decimalIntegers: string[] } {
  const m = /^([A-Za-z_][\w-]*)(?:\((.*)\))?$/s.exec(text);
  if (!m) throw new UsageError(`cache spec "${whole}": cannot read "${text}"; expected name or name(key=value,…)`);
  const params: Record<string, ParamValue> = {};
  const decimalIntegers: string[] = [];
  if (m[2] !== undefined && m[2] !== '') {
    for (const item of splitTop(m[2], ',', whole)) {
      const eq = item.indexOf('=');
      if (eq <= 0) throw new UsageError(`cache spec "${whole}": "${item}" should be key=value`);
      const key = item.slice(0, eq);
      if (key in params) throw new UsageError(`cache spec "${whole}": ${key} is given twice`);
      const value = item.slice(eq + 1);
      params[key] = parseValue(value, whole);
      if (value.split(/[[\],]/).some((t) => /[.eE]/.test(t) && Number.isInteger(Number(t)))) decimalIntegers.push(key);
    }
  }
  return { part: { name: m[1]!, params }, decimalIntegers };
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
  if (isWord(text)) return text;
  throw new UsageError(
    `cache spec "${whole}": cannot read value "${text}"; a value is a number, true, false, a word of letters, digits and _ . - / ~ (a path), or a "quoted string"`,
  );
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
  const issue = findIssue(schema.params, part.params);
  if (!issue) return;
  const allowed = Object.keys(schema.params);
  switch (issue.kind) {
    case 'unknown':
      throw new UsageError(`cache spec "${whole}": ${part.name} has no parameter "${issue.key}"; allowed: ${allowed.length ? allowed.join(', ') : '(none)'}`);
    case 'invalid':
      throw new UsageError(`cache spec "${whole}": ${part.name}(${issue.key}=…) ${issue.problem}, got ${printValue(issue.value)}`);
    case 'missing':
      throw new UsageError(`cache spec "${whole}": ${part.name} needs ${issue.key} (${issue.doc})`);
  }
}
