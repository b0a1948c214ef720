import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/engine/model.js';
import { argmax } from '../../src/engine/sample.js';
import { STORIES_BIN, STORIES_GGUF, STORIES_F64_GREEDY } from './helpers.js';

const reference = JSON.parse(fs.readFileSync(STORIES_F64_GREEDY, 'utf8')) as { ids: number[]; text: string };

/** Greedy decoding from BOS, one token at a time, with the session's own machinery. */
async function greedyIds(path: string, backend: 'wasm' | 'reference', threads = 1): Promise<number[]> {
  const model = await loadModel(path, { backend, threads });
  try {
    const session = model.session();
    const ids = [reference.ids[0]!];
    let logits = session.feed(ids);
    while (ids.length < reference.ids.length) {
      const next = argmax(logits);
      ids.push(next);
      logits = session.feed([next]);
    }
    return ids;
  } finally {
    await model.close();
  }
}

describe('stories260K greedy decoding reproduces the float64 reference', () => {
  it.each([
    ['llama2.c .bin', STORIES_BIN, 'wasm', 2],
    ['GGUF', STORIES_GGUF, 'wasm', 1],
    ['llama2.c .bin, scalar kernels', STORIES_BIN, 'reference', 1],
  ] as const)('%s', async (_name, path, backend, threads) => {
    expect(await greedyIds(path, backend, threads)).toEqual(reference.ids);
  });

  it('generate() with --greedy streams the reference text', async () => {
    const model = await loadModel(STORIES_BIN, { threads: 1 });
    try {
      let text = '';
      for await (const piece of model.session().generate([1], { temperature: 0, maxTokens: 64 })) text += piece;
      // the reference writes the newline byte token as "<0x0A>"; decoded, it is a newline
      expect(text).toBe(reference.text.replace('<0x0A>', '\n'));
    } finally {
      await model.close();
    }
  });
});
