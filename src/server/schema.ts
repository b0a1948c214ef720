/**
 * What a request body may hold: JSON schemas Fastify validates with before a handler runs (types and
 * ranges, the samplers' taken from the library's SAMPLING_PARAMS), and the fields checked before them:
 * OpenAI's fields the server does not implement, and fields it does not know.
 */
import { RequestError } from '../errors.js';
import { SAMPLING_PARAMS, type SamplingOptions } from '../engine/sample.js';
import { jsonSchema, own } from '../util/schema.js';

/** The samplers' fields: OpenAI's names where OpenAI has one, llama-server's for the rest (and vLLM's `repetition_penalty`). */
const SAMPLER_FIELDS = {
  temperature: 'temperature',
  top_p: 'topP',
  seed: 'seed',
  top_k: 'topK',
  min_p: 'minP',
  repeat_penalty: 'repeatPenalty',
  repetition_penalty: 'repeatPenalty',
  repeat_last_n: 'repeatLastN',
  presence_penalty: 'presencePenalty',
  frequency_penalty: 'frequencyPenalty',
} as const satisfies Record<string, keyof SamplingOptions>;

type SamplerField = keyof typeof SAMPLER_FIELDS;

/** Most alternatives a response lists per token (OpenAI's `top_logprobs` bound). */
export const MAX_LOGPROBS = 20;

const samplers = Object.fromEntries(Object.entries(SAMPLER_FIELDS).map(([field, key]) => [field, jsonSchema(SAMPLING_PARAMS[key])]));

/** Fields /v1/completions and /v1/chat/completions share. */
const common = {
  model: { type: 'string', minLength: 1 },
  max_tokens: { type: ['integer', 'null'], minimum: 1 },
  ...samplers,
  stop: { type: ['string', 'array', 'null'], items: { type: 'string' }, maxItems: 4 },
  stream: { type: ['boolean', 'null'] },
  stream_options: { type: ['object', 'null'], properties: { include_usage: { type: 'boolean' } } },
  /** Accepted and ignored: they change nothing in the answer. */
  user: { type: ['string', 'null'] },
  /** kvpack extension: the cache spec this request runs with. */
  kv_cache: { type: 'string', minLength: 1 },
} as const;

export const completionSchema = {
  type: 'object',
  required: ['model', 'prompt'],
  properties: {
    ...common,
    prompt: {
      anyOf: [
        { type: 'string' },
        { type: 'array', items: { type: 'string' }, minItems: 1, maxItems: 1 },
        { type: 'array', items: { type: 'integer', minimum: 0 }, minItems: 1 },
      ],
    },
    logprobs: { type: ['integer', 'null'], minimum: 0, maximum: MAX_LOGPROBS },
  },
} as const;

const textPart = { type: 'object', required: ['type', 'text'], properties: { type: { const: 'text' }, text: { type: 'string' } } } as const;

export const chatSchema = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...common,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    logprobs: { type: ['boolean', 'null'] },
    top_logprobs: { type: ['integer', 'null'], minimum: 0, maximum: MAX_LOGPROBS },
    // accepted and ignored, as `user`
    metadata: { type: ['object', 'null'] },
    service_tier: { type: ['string', 'null'] },
    parallel_tool_calls: { type: ['boolean', 'null'] },
    messages: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['role', 'content'],
        properties: {
          role: { enum: ['system', 'developer', 'user', 'assistant', 'tool'] },
          content: { anyOf: [{ type: 'string' }, { type: 'array', items: textPart }] },
          name: { type: 'string' },
        },
      },
    },
  },
} as const;

/** An OpenAI field the server does not implement: refused unless its value asks for nothing (`accepted`, in words). */
interface Unsupported {
  accepts(value: unknown): boolean;
  accepted?: string;
}

const only = (values: readonly unknown[], accepted: string): Unsupported => ({ accepts: (v) => values.includes(v), accepted });
const EMPTY: Unsupported = {
  accepts: (v) => (Array.isArray(v) ? v.length === 0 : typeof v === 'object' && v !== null && Object.keys(v).length === 0),
  accepted: 'an empty one',
};
const NEVER: Unsupported = { accepts: () => false };

export const COMPLETION_UNSUPPORTED: Record<string, Unsupported> = {
  n: only([1], '1'),
  best_of: only([1], '1'),
  echo: only([false], 'false'),
  suffix: only([''], '""'),
  logit_bias: EMPTY,
};

export const CHAT_UNSUPPORTED: Record<string, Unsupported> = {
  n: only([1], '1'),
  logit_bias: EMPTY,
  tools: EMPTY,
  functions: EMPTY,
  // without tools, "auto" calls none
  tool_choice: only(['none', 'auto'], '"none" or "auto"'),
  function_call: only(['none', 'auto'], '"none" or "auto"'),
  response_format: { accepts: (v) => JSON.stringify(v) === '{"type":"text"}', accepted: '{"type": "text"}' },
  modalities: { accepts: (v) => JSON.stringify(v) === '["text"]', accepted: '["text"]' },
  audio: NEVER,
  prediction: NEVER,
  reasoning_effort: NEVER,
  web_search_options: NEVER,
  store: only([false], 'false'),
};

/**
 * Refuses a field the server does not implement (unless its value asks for nothing; null is "not
 * given") and a field it does not know, as OpenAI refuses unknown fields: a field silently ignored
 * would change the answer without the client knowing (llama-server's `grammar`, `mirostat`, …).
 */
export function refuseFields(body: unknown, schema: { properties: object }, unsupported: Record<string, Unsupported>): void {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return; // the schema refuses it
  for (const [field, value] of Object.entries(body)) {
    const named = field.length > 64 ? `${field.slice(0, 64)}…` : field;
    const u = own(unsupported, field);
    if (u) {
      if (value === null || u.accepts(value)) continue;
      const accepted = u.accepted ? `; it accepts ${u.accepted} only` : '';
      throw new RequestError(`Unsupported parameter: '${named}' is not supported by this server${accepted}`, 400, 'unsupported_parameter', named);
    }
    if (!Object.hasOwn(schema.properties, field)) {
      throw new RequestError(`Unrecognized request argument supplied: '${named}'; the fields are ${Object.keys(schema.properties).join(', ')}`, 400, 'unknown_parameter', named);
    }
  }
}

type SamplerFields = { [F in SamplerField]?: number | null };

/** The request's sampling options, in the library's names: only those it gives. */
export function samplingOptions(body: SamplerFields): Partial<SamplingOptions> {
  const { repeat_penalty: a, repetition_penalty: b } = body;
  if (a != null && b != null && a !== b) {
    throw new RequestError(`repeat_penalty (${a}) and repetition_penalty (${b}) are two names of one sampler; send one`, 400, 'invalid_value', 'repetition_penalty');
  }
  const out: Partial<Record<keyof SamplingOptions, number>> = {};
  for (const [field, key] of Object.entries(SAMPLER_FIELDS) as [SamplerField, keyof SamplingOptions][]) {
    const value = body[field];
    if (value !== null && value !== undefined) out[key] = value;
  }
  return out;
}

interface CommonBody extends SamplerFields {
  model: string;
  max_tokens?: number | null;
  stop?: string | string[] | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  kv_cache?: string;
}

export interface CompletionBody extends CommonBody {
  prompt: string | [string] | number[];
  logprobs?: number | null;
}

export interface ChatBody extends CommonBody {
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  messages: { role: string; content: string | { type: 'text'; text: string }[] }[];
}
