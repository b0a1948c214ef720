import { describe, expect, it } from 'vitest';
import { parseSpec, printSpec, specFromFp32Default } from '../../src/cache/registry.js';
import { UsageError } from '../../src/errors.js';

describe('cache spec grammar', () => {
  it.each([
    'full',
    'h2o(budget=0.2,recent=0.05)',
    'window(sinks=4,recent=1020)',
    'scissorhands(budget=512,window=64,recent=16,drop=32)',
    'tova(budget=128)+fp32',
    'snapkv(budget=0.5,window=32,pool=7)',
    'random(budget=100,seed=3)',
    'knorm(budget=[64,32,16])',
    'h2o(budget=256,schedule=pyramid)',
  ])('%s prints back as itself', (text) => {
    expect(printSpec(parseSpec(text))).toBe(text);
    expect(parseSpec(printSpec(parseSpec(text)))).toEqual(parseSpec(text));
  });

  it('prints parameters in schema order and ignores spaces', () => {
    expect(printSpec(parseSpec(' h2o( recent=8 , budget=64 ) '))).toBe('h2o(budget=64,recent=8)');
  });

  it('a codec alone means the full policy; fp16 is the default codec and +fp32 stays explicit', () => {
    expect(parseSpec('fp32').policy.name).toBe('full');
    expect(parseSpec('full').codec.name).toBe('fp16');
    expect(parseSpec('h2o(budget=0.2)').codec.name).toBe('fp16');
    expect(printSpec(parseSpec('full+fp16'))).toBe('full');
    expect(printSpec(parseSpec('fp32'))).toBe('full+fp32');
    expect(printSpec(parseSpec('h2o(budget=0.2)+fp32'))).toBe('h2o(budget=0.2)+fp32');
  });

  it('reads specs printed when fp32 was the default (result rows of kvpack 0.1.0) into today\'s text', () => {
    expect(specFromFp32Default('full')).toBe('full+fp32');
    expect(specFromFp32Default('full+fp16')).toBe('full');
    expect(specFromFp32Default('h2o(budget=0.2)')).toBe('h2o(budget=0.2)+fp32');
    expect(specFromFp32Default('h2o(budget=0.2)+int(bits=4)')).toBe('h2o(budget=0.2)+int(bits=4)');
    expect(specFromFp32Default('qhitter(budget=0.2,bits=4)')).toBe('qhitter(budget=0.2,bits=4)');
    expect(specFromFp32Default('qhitter(budget=0.2,bits=4)+fp16')).toBe('qhitter(budget=0.2,bits=4)+fp16');
  });

  it('keeps an explicit codec in the canonical form, unless it is the one the policy stores with anyway', () => {
    expect(printSpec(parseSpec('qhitter(budget=0.2)+fp32'))).toBe('qhitter(budget=0.2)+fp32');
    expect(printSpec(parseSpec('qhitter(budget=0.2)'))).toBe('qhitter(budget=0.2)');
    expect(parseSpec('qhitter(budget=0.2,bits=2)').codec).toEqual({ name: 'int', params: { bits: 2, axis: 'token', group: 64 } });
    expect(printSpec(parseSpec('qhitter(bits=2)+int(bits=2,axis=token,group=64)'))).toBe('qhitter(bits=2)');
  });

  it.each(['h2o(budget=1.0)', 'window(sinks=4,recent=1.0)', 'h2o(budget=[0.5,1.0])', 'h2o(budget=2.0)'])(
    '%s (a count written as a decimal: one token or the whole prompt?) is refused as ambiguous',
    (text) => {
      expect(() => parseSpec(text)).toThrow(UsageError);
      expect(() => parseSpec(text)).toThrow(/is ambiguous: a token count is written as an integer/);
    },
  );

  it('budget=1 is one token; alpha=1.0 is no token count and stays allowed', () => {
    expect(printSpec(parseSpec('h2o(budget=1)'))).toBe('h2o(budget=1)');
    expect(printSpec(parseSpec('qhitter(budget=0.2,alpha=1.0)'))).toBe('qhitter(budget=0.2,alpha=1)');
  });

  it.each([
    ['bogus(budget=3)', /unknown name "bogus".*policies: full, window, h2o/],
    ['h2o(budget=0.2,recnt=3)', /h2o has no parameter "recnt"; allowed: budget, schedule, heads, floor, recent/],
    ['h2o(budget=1.5)', /budget=…\) must be a token count/],
    ['h2o(budget=-1)', /must be a token count/],
    ['h2o', /h2o needs budget/],
    ['window(sinks=-1,recent=4)', /sinks=…\) must be an integer ≥ 0/],
    ['h2o(budget=10,schedule=steep)', /must be one of uniform, pyramid/],
    ['fp16+h2o(budget=3)', /out of place/],
    ['h2o(budget=3', /unbalanced/],
    ['h2o(budget=3)+fp16+fp32', /expected policy, codec, or policy\+codec/],
    ['h2o(budget=3,budget=4)', /budget is given twice/],
  ])('%s is refused with a message that says what is allowed', (text, message) => {
    expect(() => parseSpec(text)).toThrow(UsageError);
    expect(() => parseSpec(text)).toThrow(message);
  });

  it.each([
    ['kvquant(bits=2,calib=/abs/dir/ref-6m.calib)', 'full+kvquant(bits=2,calib=/abs/dir/ref-6m.calib)', '/abs/dir/ref-6m.calib'],
    ['kvquant(calib=./rel/x_1.calib)', 'full+kvquant(calib=./rel/x_1.calib)', './rel/x_1.calib'],
    ['kvquant(calib=~/calib/a-b.calib)', 'full+kvquant(calib=~/calib/a-b.calib)', '~/calib/a-b.calib'],
    ['kvquant(calib=../up/2bit.calib)', 'full+kvquant(calib=../up/2bit.calib)', '../up/2bit.calib'],
    ['kvquant(calib="/abs/dir/ref-6m.calib")', 'full+kvquant(calib=/abs/dir/ref-6m.calib)', '/abs/dir/ref-6m.calib'],
    // what is not a bare word stays quoted, spaces inside quotes included
    ['kvquant(calib="/my files/a,b.calib")', 'full+kvquant(calib="/my files/a,b.calib")', '/my files/a,b.calib'],
    ['kvquant(calib="1234")', 'full+kvquant(calib="1234")', '1234'],
    ['kvquant(calib="true")', 'full+kvquant(calib="true")', 'true'],
  ])('a path is a value: %s', (text, canonical, file) => {
    const spec = parseSpec(text);
    expect(spec.codec.params.calib).toBe(file);
    expect(printSpec(spec)).toBe(canonical);
    expect(parseSpec(printSpec(spec))).toEqual(spec);
  });

  it('a value it cannot read says what a value may be', () => {
    expect(() => parseSpec('kvquant(calib=/a/b(c).calib)')).toThrow(/cannot read value .*a word of letters, digits and _ \. - \/ ~ \(a path\), or a "quoted string"/);
  });
});
