import fs from 'node:fs';
import path from 'node:path';
import { stemmer as reference } from 'stemmer';
import { describe, expect, it } from 'vitest';
import { sharedDataDir } from '../../src/eval/data.js';
import { PorterStemmer } from '../../src/eval/porter.js';
import { lcsLength, rouge, rougeTokenize } from '../../src/eval/rouge.js';

describe('Porter stemmer', () => {
  const nltk = new PorterStemmer('nltk');
  const martin = new PorterStemmer('martin');

  it("gives the final stems of the paper's examples", () => {
    const cases: Record<string, string> = {
      caresses: 'caress', ponies: 'poni', caress: 'caress', cats: 'cat', feed: 'feed', agreed: 'agre',
      plastered: 'plaster', bled: 'bled', motoring: 'motor', sing: 'sing', conflated: 'conflat', troubled: 'troubl',
      sized: 'size', hopping: 'hop', tanned: 'tan', falling: 'fall', hissing: 'hiss', fizzed: 'fizz', failing: 'fail',
      filing: 'file', happy: 'happi', relational: 'relat', conditional: 'condit', rational: 'ration',
      digitizer: 'digit', differentli: 'differ', vietnamization: 'vietnam', predication: 'predic', operator: 'oper',
      feudalism: 'feudal', decisiveness: 'decis', hopefulness: 'hope', callousness: 'callous', formaliti: 'formal',
      sensitiviti: 'sensit', sensibiliti: 'sensibl', triplicate: 'triplic', formative: 'form', formalize: 'formal',
      electriciti: 'electr', electrical: 'electr', hopeful: 'hope', goodness: 'good', revival: 'reviv',
      allowance: 'allow', inference: 'infer', airliner: 'airlin', gyroscopic: 'gyroscop', adjustable: 'adjust',
      defensible: 'defens', irritant: 'irrit', replacement: 'replac', adjustment: 'adjust', dependent: 'depend',
      adoption: 'adopt', homologou: 'homolog', communism: 'commun', activate: 'activ', angulariti: 'angular',
      homologous: 'homolog', effective: 'effect', bowdlerize: 'bowdler', probate: 'probat', rate: 'rate',
      cease: 'ceas', controll: 'control', roll: 'roll', generalizations: 'gener', oscillators: 'oscil',
    };
    for (const [word, stem] of Object.entries(cases)) {
      expect([word, martin.stem(word)]).toEqual([word, stem]);
      expect([word, nltk.stem(word)]).toEqual([word, stem]);
    }
  });

  it("applies NLTK's extensions in nltk mode (what rouge-score uses)", () => {
    const cases: Record<string, [martin: string, nltk: string]> = {
      dies: ['di', 'die'], died: ['di', 'die'], flies: ['fli', 'fli'], spied: ['spi', 'spi'], dying: ['dy', 'die'],
      enjoy: ['enjoi', 'enjoy'], sky: ['sky', 'sky'], skies: ['ski', 'sky'], news: ['new', 'news'],
      trying: ['try', 'tri'], says: ['sai', 'say'], internationally: ['internation', 'intern'], use: ['us', 'use'],
      proceed: ['proce', 'proceed'], innings: ['in', 'inning'],
    };
    for (const [word, [m, n]] of Object.entries(cases)) {
      expect([word, martin.stem(word), nltk.stem(word)]).toEqual([word, m, n]);
    }
  });

  it('martin mode equals an independent Porter implementation (the stemmer package) on the XSum vocabulary', () => {
    const file = path.join(sharedDataDir(), 'xsum/xsum_0shot.jsonl');
    const words = new Set<string>();
    for (const line of fs.readFileSync(file, 'utf8').split('\n').slice(0, 400)) {
      if (!line.trim()) continue;
      const item = JSON.parse(line) as { article: string; summary_gt: string };
      for (const w of rougeTokenize(`${item.article} ${item.summary_gt}`)) words.add(w);
    }
    expect(words.size).toBeGreaterThan(5000);
    const differ = [...words].filter((w) => martin.stem(w) !== reference(w));
    expect(differ).toEqual([]);
  });
});

describe('ROUGE (rouge-score semantics)', () => {
  it('tokenizes like rouge-score: lowercase, non-alphanumerics split, stems only tokens longer than 3', () => {
    expect(rougeTokenize("The U.S. isn't   running—fast!", false)).toEqual(['the', 'u', 's', 'isn', 't', 'running', 'fast']);
    expect(rougeTokenize('Cats were running; dogs ran.', true)).toEqual(['cat', 'were', 'run', 'dog', 'ran']);
    expect(rougeTokenize('¿Qué? 42', false)).toEqual(['qu', '42']);
  });

  it("reproduces rouge-score's README example", () => {
    // RougeScorer(['rouge1', 'rougeL'], use_stemmer=True).score(target, prediction) as published
    const s = rouge('The quick brown fox jumps over the lazy dog', 'The quick brown dog jumps on the log.');
    expect(s.rouge1.precision).toBeCloseTo(0.75, 12);
    expect(s.rouge1.recall).toBeCloseTo(0.6666666666666666, 12);
    expect(s.rouge1.fmeasure).toBeCloseTo(0.7058823529411765, 12);
    expect(s.rougeL.precision).toBeCloseTo(0.625, 12);
    expect(s.rougeL.recall).toBeCloseTo(0.5555555555555556, 12);
    expect(s.rougeL.fmeasure).toBeCloseTo(0.5882352941176471, 12);
    // by hand: 2 of 7 predicted and 8 target bigrams shared ("the quick", "quick brown")
    expect(s.rouge2.precision).toBeCloseTo(2 / 7, 12);
    expect(s.rouge2.recall).toBeCloseTo(2 / 8, 12);
    expect(s.rouge2.fmeasure).toBeCloseTo(28 / 105, 12);
  });

  it('clips repeated n-grams, handles empty sides, and stems only when asked', () => {
    // prediction "the the the" vs target "the cat": one "the" matches
    const s = rouge('the cat', 'the the the', { stemmer: false });
    expect(s.rouge1).toEqual({ precision: 1 / 3, recall: 1 / 2, fmeasure: 0.4 });
    expect(rouge('', 'anything').rouge1.fmeasure).toBe(0);
    expect(rouge('anything', '...').rougeL).toEqual({ precision: 0, recall: 0, fmeasure: 0 });
    expect(rouge('running dogs', 'run dog', { stemmer: false }).rouge1.fmeasure).toBe(0);
    expect(rouge('running dogs', 'run dog', { stemmer: true }).rouge1.fmeasure).toBe(1);
  });

  it('LCS is a subsequence, not a substring', () => {
    expect(lcsLength(['a', 'b', 'c', 'd', 'e'], ['a', 'x', 'c', 'y', 'e'])).toBe(3);
    expect(lcsLength(['a', 'b'], ['b', 'a'])).toBe(1);
    expect(lcsLength([], ['a'])).toBe(0);
  });
});
