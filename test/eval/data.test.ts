import { describe, expect, it } from 'vitest';
import { evalChunks, loadEvalTokens } from '../../src/eval/data.js';

const noTokenizer = {
  encode: (): number[] => {
    throw new Error('token sets are never tokenized');
  },
};

describe('evaluation tokens', () => {
  it('stories260k is its stored ids, one document per story, each starting with BOS', () => {
    const tokens = loadEvalTokens('stories260k', noTokenizer);
    expect(tokens.kind).toBe('documents');
    if (tokens.kind !== 'documents') return;
    expect(tokens.docs.length).toBeGreaterThanOrEqual(8);
    for (const d of tokens.docs) expect(d[0]).toBe(1);
    const chunks = evalChunks(tokens, 100, 3);
    expect(chunks).toHaveLength(3);
    expect(chunks[0]).toEqual(tokens.docs[0]!.slice(0, 100));
  });

  it('a stream is cut into whole ctx-token chunks', () => {
    const ids = Array.from({ length: 10 }, (_, i) => i);
    expect(evalChunks({ kind: 'stream', ids }, 4)).toEqual([[0, 1, 2, 3], [4, 5, 6, 7]]);
    expect(evalChunks({ kind: 'stream', ids }, 4, 1)).toEqual([[0, 1, 2, 3]]);
    expect(() => evalChunks({ kind: 'stream', ids }, 11, undefined, 'tiny')).toThrow(/tiny has 10 tokens/);
  });
});
