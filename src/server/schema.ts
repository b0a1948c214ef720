/** JSON schemas of the request bodies (Fastify validates with them before a handler runs). */
import { SEED_RANGE } from '../util/random.js';

/** Fields /v1/completions and /v1/chat/completions share. */
const common = {
  model: { type: 'string', minLength: 1 },
  max_tokens: { type: ['integer', 'null'], minimum: 1 },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
  /** The library's and the CLI's range: seeds past 32 bits would alias. */
  seed: { type: ['integer', 'null'], minimum: SEED_RANGE.min, maximum: SEED_RANGE.max },
  stop: { type: ['string', 'array', 'null'], items: { type: 'string' }, maxItems: 4 },
  stream: { type: ['boolean', 'null'] },
  stream_options: { type: ['object', 'null'], properties: { include_usage: { type: 'boolean' } } },
  n: { type: ['integer', 'null'], minimum: 1, maximum: 1 },
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
  },
} as const;

const textPart = { type: 'object', required: ['type', 'text'], properties: { type: { const: 'text' }, text: { type: 'string' } } } as const;

export const chatSchema = {
  type: 'object',
  required: ['model', 'messages'],
  properties: {
    ...common,
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
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

interface CommonBody {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  kv_cache?: string;
}

export interface CompletionBody extends CommonBody {
  prompt: string | [string] | number[];
}

export interface ChatBody extends CommonBody {
  max_completion_tokens?: number | null;
  messages: { role: string; content: string | { type: 'text'; text: string }[] }[];
}
