/**
 * The one parameter schema: cache specs, eval tasks, sweep plans and command-line options declare
 * their parameters with these builders, get their TypeScript types inferred (`Infer`), are checked
 * by `findIssue`, and get their defaults from `applyDefaults`. Each caller words the message around
 * the issue (a spec names the part, a plan the entry, the command line the option); the phrases
 * here are the shared middle: "must be an integer ≥ 0".
 */

/** `record[key]` when it is the record's own (a key named `constructor` or `__proto__` is not inherited). */
export function own<V>(record: Readonly<Record<string, V>>, key: string): V | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}

/** A parameter value as a spec, a plan or a command line gives it. */
export type ParamValue = number | boolean | string | readonly number[];

export interface Param<T = ParamValue> {
  /** Why `value` is not a valid T ("must be an integer ≥ 0"), or undefined when it is. */
  problem(value: unknown): string | undefined;
  /** What a command-line word (`key=value`, `--key value`) stands for: a number for numeric types. */
  fromText(text: string): unknown;
  default?: T;
  /** May be left out with no default; the consumer decides what that means. */
  optional?: true;
  /** A list gives one value per layer, so its length must be the model's layer count. */
  perLayer?: true;
  /** A number of tokens (or a fraction of the prompt): bounded by the model's context, written without a decimal point. */
  tokens?: true;
  doc: string;
  /** The values it takes, in words ("an integer ≥ 0"): `problem` says "must be" this, `kvpack caches` lists it. */
  range?: string;
  /** A number's bounds, for what checks it elsewhere (the server's JSON schema, see jsonSchema). */
  bounds?: NumberBounds;
  /** Carries T for inference; never set. */
  readonly __type?: T;
}

export type Params = Record<string, Param<unknown>>;

type ValueOf<P> = P extends Param<infer T> ? T : never;
type OptionalKeys<P extends Params> = { [K in keyof P]: P[K] extends { optional: true } ? K : never }[keyof P];

/** The values of a schema once defaults are filled in: optional parameters without a default may be absent. */
export type Infer<P extends Params> = { -readonly [K in Exclude<keyof P, OptionalKeys<P>>]: ValueOf<P[K]> } & {
  -readonly [K in OptionalKeys<P>]?: ValueOf<P[K]>;
};

export interface NumberBounds {
  integer: boolean;
  min: number;
  max?: number;
  exclusiveMin?: true;
}

interface Options<T> {
  doc: string;
  range?: string;
  bounds?: NumberBounds;
  default?: T;
  optional?: true;
  perLayer?: true;
  tokens?: true;
}

/** The param with its `optional` flag kept in the type (so `Infer` knows what may be absent). */
type Built<T, O> = Param<T> & (O extends { optional: true } ? { optional: true } : unknown);

const range = (min: number, max?: number) => (max === undefined ? `≥ ${min}` : `in [${min}, ${max}]`);
const asNumber = (text: string): unknown => (text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : text);

/** A parameter of any type: `problem` says what is wrong with a value. */
export function param<T, const O extends Options<T> = Options<T>>(
  problem: (value: unknown) => string | undefined,
  options: O & Options<T>,
  fromText: (text: string) => unknown = (t) => t,
): Built<T, O> {
  return { ...options, problem, fromText } as Built<T, O>;
}

export function int<const O extends Options<number> & { min: number; max?: number }>(o: O): Built<number, O> {
  const { min, max, ...options } = o;
  const words = `an integer ${range(min, max)}`;
  return param<number, O>(
    // 1e308 is an integer to Number.isInteger, but no count: past 2^53 integers alias
    (v) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= min && (max === undefined || v <= max) ? undefined : `must be ${words}`),
    { range: words, bounds: { integer: true, min, max }, ...options } as O,
    asNumber,
  );
}

export function number<const O extends Options<number> & { min: number; max?: number; exclusiveMin?: true }>(o: O): Built<number, O> {
  const { min, max, exclusiveMin, ...options } = o;
  const words = `a number ${exclusiveMin ? `> ${min}${max === undefined ? '' : ` and ≤ ${max}`}` : range(min, max)}`;
  return param<number, O>(
    (v) => (typeof v === 'number' && Number.isFinite(v) && (exclusiveMin ? v > min : v >= min) && (max === undefined || v <= max) ? undefined : `must be ${words}`),
    { range: words, bounds: { integer: false, min, max, exclusiveMin }, ...options } as O,
    asNumber,
  );
}

export function bool<const O extends Options<boolean>>(o: O): Built<boolean, O> {
  return param<boolean, O>((v) => (typeof v === 'boolean' ? undefined : 'must be true or false'), { range: 'true or false', ...o }, (t) => (t === 'true' ? true : t === 'false' ? false : t));
}

export function oneOf<const V extends string | number, const O extends Options<V>>(values: readonly V[], o: O): Built<V, O> {
  const numeric = values.some((v) => typeof v === 'number');
  return param<V, O>((v) => (values.includes(v as V) ? undefined : `must be one of ${values.join(', ')}`), { range: `one of ${values.join(', ')}`, ...o }, numeric ? asNumber : (t) => t);
}

export function text<const O extends Options<string>>(o: O): Built<string, O> {
  return param<string, O>((v) => (typeof v === 'string' && v !== '' ? undefined : 'must be a non-empty string'), { range: 'a non-empty string', ...o });
}

/** A number, or a list of numbers (one per layer), each in range. */
export function numbers<const O extends Options<number | readonly number[]> & { min: number; max?: number }>(o: O): Built<number | readonly number[], O> {
  const { min, max, ...options } = o;
  const ok = (x: unknown) => typeof x === 'number' && x >= min && (max === undefined || x <= max);
  const words = `a number or a list of numbers ${range(min, max)}`;
  return param<number | readonly number[], O>(
    (v) => ((Array.isArray(v) ? v.length > 0 && v.every(ok) : ok(v)) ? undefined : `must be ${words}`),
    { range: words, ...options } as O,
    asNumber,
  );
}

/**
 * A numeric parameter as a JSON-schema property (null allowed: OpenAI's "not given"), so an HTTP
 * body is checked against the same range the library checks.
 */
export function jsonSchema(p: Param<number>): Record<string, unknown> {
  const b = p.bounds;
  if (!b) throw new Error('jsonSchema: the parameter is not a number');
  // past 2^53 integers alias: int() refuses them, and so does the schema
  const max = b.max ?? (b.integer ? Number.MAX_SAFE_INTEGER : undefined);
  return {
    type: [b.integer ? 'integer' : 'number', 'null'],
    [b.exclusiveMin ? 'exclusiveMinimum' : 'minimum']: b.min,
    ...(max !== undefined && { maximum: max }),
  };
}

/** The same parameter, optional (no default). */
export function optional<T>(p: Param<T>): Param<T> & { optional: true } {
  const { default: _, ...rest } = p;
  return { ...rest, optional: true };
}

/** Command-line words (`key=value`, `--key value`) as the values they stand for; keys the schema lacks stay text. */
export function fromWords(schema: Params, words: Readonly<Record<string, string | undefined>>): Record<string, unknown> {
  const out: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
  for (const [key, word] of Object.entries(words)) {
    if (word === undefined) continue;
    const p = own(schema, key);
    out[key] = p ? p.fromText(word) : word;
  }
  return out;
}

/** `value` as a T, or what is wrong with it. */
export function read<T>(p: Param<T>, value: unknown): { value: T } | { problem: string } {
  const problem = p.problem(value);
  return problem === undefined ? { value: value as T } : { problem }; // problem() is the check that value is a T
}

export type ParamIssue<V = unknown> =
  | { kind: 'unknown'; key: string }
  | { kind: 'missing'; key: string; doc: string }
  | { kind: 'invalid'; key: string; value: V; problem: string };

/** The first thing wrong with `given`: a key the schema lacks, a value it refuses, a required key left out. */
export function findIssue<V>(schema: Params, given: Readonly<Record<string, V | undefined>>): ParamIssue<V> | undefined {
  for (const [key, value] of Object.entries(given)) {
    if (value === undefined) continue;
    const p = own(schema, key);
    if (!p) return { kind: 'unknown', key };
    const problem = p.problem(value);
    if (problem) return { kind: 'invalid', key, value, problem };
  }
  for (const [key, p] of Object.entries(schema)) {
    if (p.default === undefined && !p.optional && given[key] === undefined) return { kind: 'missing', key, doc: p.doc };
  }
  return undefined;
}

/** The given values (already checked by `findIssue`) with every default filled in, in schema order. */
export function applyDefaults<P extends Params>(schema: P, given: Readonly<Record<string, unknown>>): Infer<P> {
  const out: Record<string, unknown> = {};
  for (const [key, p] of Object.entries(schema)) {
    const v = given[key] ?? p.default;
    if (v !== undefined) out[key] = v;
  }
  return out as Infer<P>; // findIssue checked every value against its Param<T>
}
