// Shared inputs and the node-llama-cpp reference for tokenizer tests.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { getLlama, LlamaLogLevel, type Llama, type LlamaModel } from 'node-llama-cpp';

export const shared = (...parts: string[]) => path.resolve('../shared', ...parts);

/** Varied text: WikiText-2 paragraphs, C4 documents, and hand-made edge cases. */
export function sampleTexts(): string[] {
  const wiki = readFileSync(shared('data/wikitext2/wiki.test.raw'), 'utf8');
  const paragraphs = wiki.split('\n').filter((l) => l.trim().length > 200).slice(0, 8);
  const c4 = readFileSync(shared('data/c4/c4_validation_2k.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .slice(0, 12)
    .map((l) => (JSON.parse(l) as { text: string }).text);
  return [
    ...paragraphs,
    ...c4,
    wiki.slice(0, 4000), // several paragraphs with their blank lines
    'Hello world',
    "don't I'll we've they're she'd it's DON'T I'LL You're",
    'Numbers: 0 7 42 1234567 3.14159 -17 1,000,000 2024-05-09 0x1F 1e-9 ⅔ ٣٤٥',
    'Unicode: café naïve Zürich façade — “quotes” ‘single’ … 日本語のテキスト 中文 한국어 Ελληνικά русский עברית العربية',
    'Emoji: 😀 👍🏽 👨‍👩‍👧‍👦 🇯🇵 ❤️ 🤖',
    'Whitespace:   three spaces\ttab\t\ttwo tabs    \n\n\n   indented\r\nCRLF \u00a0nbsp\u3000ideographic  ',
    '\n\nleading newlines and trailing ones\n\n',
    '   leading spaces',
    'trailing spaces   ',
    ' ',
    '\n',
    'a',
    'code: for (let i = 0; i < n; i++) { x[i] += y[i] * 2; } // comment <tag attr="v"/> $HOME ~/.rc a|b ^_^',
    'Punctuation!!! ??? ... ,,, ;;; --- ___ *** ### @@@ %%% &&& ((( ))) [[[ ]]]',
    'MiXeD CaSe WoRdS and ALLCAPS and lowercase',
  ];
}

export interface LlamaCpp {
  llama: Llama;
  model: LlamaModel;
  dispose(): Promise<void>;
}

export async function loadLlamaCpp(modelPath: string): Promise<LlamaCpp> {
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath });
  return {
    llama,
    model,
    async dispose() {
      await model.dispose();
      await llama.dispose();
    },
  };
}
