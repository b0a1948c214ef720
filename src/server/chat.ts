import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { ModelFormatError, RequestError } from '../errors.js';
import { readGgufInParts } from '../model/gguf.js';
import { readSmallFile } from '../util/file.js';

/** tokenizer_config.json and chat_template.jinja are read whole: larger is not a tokenizer's config. */
const MAX_CONFIG_BYTES = 64 * 2 ** 20;

/**
 * For models that carry no chat template (base models such as ref-6m and stories260K): each message
 * on its own line as "role: content", then "assistant:" for the reply.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{ message.role }}: {{ message.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}";

export interface ChatMessage {
  role: string;
  content: string;
}

export interface ChatTemplate {
  /** Where the template came from: a file, a GGUF key, or "default". */
  origin: string;
  bosToken: string;
  eosToken: string;
  render(messages: readonly ChatMessage[]): string;
}

/**
 * The model's chat template: `chat_template` in tokenizer_config.json (or chat_template.jinja) beside
 * a Hugging Face model, `tokenizer.chat_template` in a GGUF file, else DEFAULT_CHAT_TEMPLATE.
 */
export async function loadChatTemplate(modelSource: string, format: string): Promise<ChatTemplate> {
  if (format === 'gguf') {
    const gguf = await readGgufInParts(modelSource);
    const text = gguf.metadata.get('tokenizer.chat_template');
    const tokens = gguf.metadata.get('tokenizer.ggml.tokens');
    const token = (key: string) => {
      const id = gguf.metadata.get(key);
      return typeof id === 'number' && Array.isArray(tokens) && typeof tokens[id] === 'string' ? (tokens[id] as string) : '';
    };
    if (typeof text === 'string') return compile(text, `${modelSource} (tokenizer.chat_template)`, token('tokenizer.ggml.bos_token_id'), token('tokenizer.ggml.eos_token_id'));
  } else if (format === 'hf') {
    const dir = modelSource;
    const configFile = path.join(dir, 'tokenizer_config.json');
    const config = await readJson(configFile);
    const jinjaFile = path.join(dir, 'chat_template.jinja');
    const fromFile = await readSmallFile(jinjaFile, MAX_CONFIG_BYTES);
    const text = fromFile ?? templateIn(config?.chat_template, configFile);
    const bos = tokenText(config?.bos_token);
    const eos = tokenText(config?.eos_token);
    if (text !== undefined) return compile(text, fromFile !== undefined ? jinjaFile : configFile, bos, eos);
  }
  return compile(DEFAULT_CHAT_TEMPLATE, 'default', '', '');
}

function compile(text: string, origin: string, bosToken: string, eosToken: string): ChatTemplate {
  let template: Template;
  try {
    template = new Template(text);
  } catch (e) {
    throw new ModelFormatError(origin, `the chat template does not parse: ${(e as Error).message}`);
  }
  return {
    origin,
    bosToken,
    eosToken,
    render(messages) {
      try {
        return template.render({
          messages,
          add_generation_prompt: true,
          bos_token: bosToken,
          eos_token: eosToken,
        });
      } catch (e) {
        // the template's own message (e.g. "roles must alternate"), not where the server keeps it
        throw new RequestError(`the model's chat template failed on these messages: ${(e as Error).message}`, 400, 'invalid_messages', 'messages');
      }
    },
  };
}

async function readJson(file: string): Promise<Record<string, unknown> | undefined> {
  const text = await readSmallFile(file, MAX_CONFIG_BYTES);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new ModelFormatError(file, `is not valid JSON: ${(e as Error).message}`);
  }
}

/** `chat_template` is a string, or a list of named templates of which "default" is the one for chat. */
function templateIn(value: unknown, file: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find((t) => (t as { name?: unknown }).name === 'default') as { template?: unknown } | undefined;
    if (typeof named?.template === 'string') return named.template;
  }
  throw new ModelFormatError(file, 'chat_template must be a string or a list with a template named "default"');
}

/** bos_token / eos_token: a string, or an object with `content`. */
function tokenText(value: unknown): string {
  if (typeof value === 'string') return value;
  const content = (value as { content?: unknown } | null | undefined)?.content;
  return typeof content === 'string' ? content : '';
}
