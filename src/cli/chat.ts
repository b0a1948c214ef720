import readline from 'node:readline';
import { UsageError } from '../errors.js';
import { loadChatTemplate, type ChatMessage, type ChatTemplate } from '../server/chat.js';
import type { GenerateOptions, Session } from '../engine/session.js';
import { bytesOption, intOption, MODEL_HELP, MODEL_OPTIONS, noPositionals, parse, SAMPLING_HELP, SAMPLING_OPTIONS, samplingOptions } from './args.js';
import { cacheSummary, speedSummary } from './generate.js';
import { loadModelFromOptions } from './load.js';

const HELP = `Usage: kvpack chat [--model M] [--tokenizer F] [--system TEXT] [--max-tokens N] [--cache SPEC] [--max-kv-bytes B]
                   [--temperature T] [--greedy] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R] […]
                   [--threads K]

An interactive chat: each line read from stdin is a user message; the reply streams to stdout. The
conversation goes through the model's chat template (tokenizer_config.json or chat_template.jinja
beside a Hugging Face model, tokenizer.chat_template in a GGUF; "role: content" lines for a model
without one) and stays in one session, so each turn feeds only what the template adds and the cache
holds the whole history. After each reply, stderr shows the turn, the tokens held, the cache's bytes
against a full fp16 cache, and the speed. End with an empty line at EOF (Ctrl-D) or /exit.
${MODEL_HELP}
  --system TEXT    a system message before the conversation
  --max-tokens N   tokens per reply at most (default 256)
  --cache SPEC     KV cache spec for the whole conversation (default full)
  --max-kv-bytes B bytes the cache may hold (e.g. 512MiB): an evicting policy evicts early, any other cache stops
${SAMPLING_HELP}
`;

/** The options `kvpack chat` takes (its --help lists each). */
export const OPTIONS = {
  ...MODEL_OPTIONS,
  system: { type: 'string' },
  'max-tokens': { type: 'string' },
  cache: { type: 'string' },
  'max-kv-bytes': { type: 'string' },
  ...SAMPLING_OPTIONS,
} as const;

export async function chatCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('chat', argv, OPTIONS);
  if (values.help) return void process.stdout.write(HELP);
  noPositionals('chat', positionals, ' (type the messages on stdin)');
  if (values.system !== undefined && values.system.trim() === '') throw new UsageError('--system needs a message');
  const limits = { maxTokens: intOption('max-tokens', values['max-tokens'], 256, 1), ...samplingOptions(values) };
  const maxKvBytes = bytesOption('max-kv-bytes', values['max-kv-bytes']);
  const model = await loadModelFromOptions(values);
  try {
    const template = await loadChatTemplate(model.source, model.format);
    process.stderr.write(`chat template: ${template.origin}\n`);
    const chat = new Conversation(model.session({ cache: values.cache, maxKvBytes }), template, values.system);
    const interactive = Boolean(process.stdin.isTTY);
    const lines = readline.createInterface({ input: process.stdin, terminal: interactive, prompt: '> ' });
    if (interactive) lines.prompt();
    for await (const line of lines) {
      if (line.trim() === '/exit') break;
      if (line.trim() !== '') {
        for await (const piece of chat.reply(line, limits)) process.stdout.write(piece);
        process.stdout.write('\n');
        process.stderr.write(`[turn ${chat.turns}, ${chat.session.tokens.length} tokens] ${cacheSummary(chat.session)}\n${speedSummary(chat.session.lastTimings!)}\n`);
      }
      if (interactive) lines.prompt();
    }
    lines.close();
  } finally {
    await model.close();
  }
}

/**
 * A conversation in one session. Each turn renders the whole history through the template and feeds
 * only what it adds after the last reply (llama-cli's way), so the cache holds every turn once.
 */
export class Conversation {
  turns = 0;
  private readonly messages: ChatMessage[] = [];
  /** The last render (ending in the generation prompt) and the reply generated after it. */
  private last: { rendered: string; reply: string } | undefined;

  constructor(readonly session: Session, private readonly template: ChatTemplate, system?: string) {
    if (system !== undefined) this.messages.push({ role: 'system', content: system });
  }

  async *reply(text: string, limits: Omit<GenerateOptions, 'stop'>): AsyncGenerator<string> {
    this.messages.push({ role: 'user', content: text });
    const rendered = this.template.render(this.messages);
    const tok = this.session.model.tokenizer;
    let ids: number[];
    const added = this.added(rendered);
    if (added !== undefined) {
      ids = tok.encode(added, { addBos: false });
    } else {
      // first turn, or a template that renders earlier turns differently once more follow: feed it all again
      this.session.reset();
      const startsWithBos = this.template.bosToken !== '' && rendered.startsWith(this.template.bosToken);
      ids = tok.encode(rendered, { addBos: tok.addBosByDefault && !startsWithBos });
    }
    // without a template of its own the model may write the next "user:" line itself
    const stop = this.template.origin === 'default' ? ['\nuser:'] : [];
    let reply = '';
    for await (const piece of this.session.generate(ids, { ...limits, stop })) {
      reply += piece;
      yield piece;
    }
    this.turns++;
    this.messages.push({ role: 'assistant', content: reply.trim() });
    this.last = { rendered, reply };
  }

  /** What `rendered` adds to the session's history: the text after the last reply's content, if the history is its prefix. */
  private added(rendered: string): string | undefined {
    if (!this.last || !rendered.startsWith(this.last.rendered)) return undefined;
    const content = this.messages.at(-2)!.content;
    const rest = rendered.slice(this.last.rendered.length);
    const at = rest.indexOf(content);
    if (at < 0 || rest.slice(0, at).trim() !== '' || !this.last.reply.includes(content)) return undefined;
    return rest.slice(at + content.length);
  }
}
