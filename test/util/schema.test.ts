import { describe, expect, it } from 'vitest';
import { applyDefaults, bool, findIssue, fromWords, int, number, numbers, oneOf, read, text } from '../../src/util/schema.js';

const SCHEMA = {
  ctx: int({ min: 2, default: 2048, doc: 'tokens per chunk' }),
  chunks: int({ min: 1, optional: true, doc: 'at most this many' }),
  bits: oneOf([2, 3, 4, 8], { default: 4, doc: 'bits per code' }),
  data: text({ doc: 'a text set' }),
};

describe('parameter schema', () => {
  it('says what a value must be, with ranges as the spec grammar words them', () => {
    expect(int({ min: 0, doc: '' }).problem(-1)).toBe('must be an integer ≥ 0');
    // past 2^53 integers alias: kvpack info --ctx 1e308 planned NaN layers per memory (issue 22's fuzz run)
    for (const v of [1e308, 2 ** 53, Infinity]) expect(int({ min: 0, doc: '' }).problem(v)).toBe('must be an integer ≥ 0');
    expect(int({ min: 0, doc: '' }).problem(2 ** 53 - 1)).toBeUndefined();
    expect(int({ min: 1, max: 9, doc: '' }).problem(1.5)).toBe('must be an integer in [1, 9]');
    expect(number({ min: 0, max: 1, exclusiveMin: true, doc: '' }).problem(0)).toBe('must be a number > 0 and ≤ 1');
    expect(oneOf(['a', 'b'], { doc: '' }).problem('c')).toBe('must be one of a, b');
    expect(numbers({ min: 0, max: 1, doc: '' }).problem([0.5, 2])).toBe('must be a number or a list of numbers in [0, 1]');
    expect(bool({ doc: '' }).problem('yes')).toBe('must be true or false');
    expect(text({ doc: '' }).problem('')).toBe('must be a non-empty string');
    expect(read(int({ min: 0, doc: '' }), 3)).toEqual({ value: 3 });
  });

  it('finds an unknown key, then a refused value, then a missing one', () => {
    expect(findIssue(SCHEMA, { ctxx: 3, ctx: 1 })).toEqual({ kind: 'unknown', key: 'ctxx' });
    expect(findIssue(SCHEMA, { ctx: 1 })).toEqual({ kind: 'invalid', key: 'ctx', value: 1, problem: 'must be an integer ≥ 2' });
    expect(findIssue(SCHEMA, { ctx: 64 })).toEqual({ kind: 'missing', key: 'data', doc: 'a text set' });
    expect(findIssue(SCHEMA, { data: 'wikitext2' })).toBeUndefined();
  });

  it('fills defaults in schema order and leaves an optional parameter without default out', () => {
    const values = applyDefaults(SCHEMA, { data: 'wikitext2', ctx: 64 });
    expect(values).toEqual({ ctx: 64, bits: 4, data: 'wikitext2' });
    expect(Object.keys(values)).toEqual(['ctx', 'bits', 'data']);
    expect('chunks' in values).toBe(false);
  });

  it('reads command-line words as numbers where the schema wants numbers, and keeps bad words for the message', () => {
    expect(fromWords(SCHEMA, { ctx: '128', bits: '3', data: '42', other: '7', chunks: undefined })).toEqual({ ctx: 128, bits: 3, data: '42', other: '7' });
    expect(fromWords(SCHEMA, { ctx: 'lots' })).toEqual({ ctx: 'lots' });
  });
});
