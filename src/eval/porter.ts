/**
 * The Porter stemmer as NLTK's `PorterStemmer()` runs it (mode NLTK_EXTENSIONS), which is what
 * rouge-score's `use_stemmer=True` calls, so ROUGE numbers here match the published scorer.
 * `martin` mode is Martin Porter's own reference implementation (the departures he published with
 * his C code: -bli, -logi, words of ≤ 2 letters kept); tests hold it to an independent package.
 *
 * Rules are tried in order; the first whose suffix matches decides, whether or not its condition
 * holds (the paper's "longest matching suffix" rule), except where a comment says otherwise.
 */
export type PorterMode = 'nltk' | 'martin';

const VOWELS = new Set(['a', 'e', 'i', 'o', 'u']);

/** NLTK's table of irregular forms, mapped straight to their stems (NLTK mode only). */
const IRREGULAR = new Map<string, string>([
  ['sky', 'sky'], ['skies', 'sky'], ['dying', 'die'], ['lying', 'lie'], ['tying', 'tie'], ['news', 'news'],
  ['innings', 'inning'], ['inning', 'inning'], ['outings', 'outing'], ['outing', 'outing'],
  ['cannings', 'canning'], ['canning', 'canning'], ['howe', 'howe'],
  ['proceed', 'proceed'], ['exceed', 'exceed'], ['succeed', 'succeed'],
]);

type Rule = [suffix: string, replacement: string, condition: ((stem: string) => boolean) | null];

function isConsonant(word: string, i: number): boolean {
  const c = word[i]!;
  if (VOWELS.has(c)) return false;
  if (c === 'y') return i === 0 ? true : !isConsonant(word, i - 1);
  return true;
}

/** m: the number of vowel→consonant transitions, [C](VC){m}[V]. */
function measure(stem: string): number {
  let m = 0;
  for (let i = 1; i < stem.length; i++) if (!isConsonant(stem, i - 1) && isConsonant(stem, i)) m++;
  return m;
}

function containsVowel(stem: string): boolean {
  for (let i = 0; i < stem.length; i++) if (!isConsonant(stem, i)) return true;
  return false;
}

function endsDoubleConsonant(word: string): boolean {
  return word.length >= 2 && word[word.length - 1] === word[word.length - 2] && isConsonant(word, word.length - 1);
}

export class PorterStemmer {
  constructor(readonly mode: PorterMode = 'nltk') {}

  stem(input: string): string {
    const word = input.toLowerCase();
    if (this.mode === 'nltk') {
      const irregular = IRREGULAR.get(word);
      if (irregular !== undefined) return irregular;
    }
    if (word.length <= 2) return word;
    let w = this.step1a(word);
    w = this.step1b(w);
    w = this.step1c(w);
    w = this.step2(w);
    w = this.step3(w);
    w = this.step4(w);
    w = this.step5a(w);
    return this.step5b(w);
  }

  /** *o: the stem ends consonant-vowel-consonant, the last not w, x or y (NLTK: also a 2-letter vc stem). */
  private endsCvc(w: string): boolean {
    const n = w.length;
    if (n >= 3 && isConsonant(w, n - 3) && !isConsonant(w, n - 2) && isConsonant(w, n - 1) && !'wxy'.includes(w[n - 1]!)) return true;
    return this.mode === 'nltk' && n === 2 && !isConsonant(w, 0) && isConsonant(w, 1);
  }

  private applyRules(word: string, rules: Rule[]): string {
    for (const [suffix, replacement, condition] of rules) {
      if (suffix === '*d') {
        if (!endsDoubleConsonant(word)) continue;
        const stem = word.slice(0, -2);
        return condition === null || condition(stem) ? stem + replacement : word;
      }
      if (word.endsWith(suffix)) {
        const stem = word.slice(0, word.length - suffix.length);
        return condition === null || condition(stem) ? stem + replacement : word;
      }
    }
    return word;
  }

  private step1a(w: string): string {
    // NLTK: 'dies' → 'die' (but 'flies' → 'fli')
    if (this.mode === 'nltk' && w.endsWith('ies') && w.length === 4) return w.slice(0, -3) + 'ie';
    return this.applyRules(w, [['sses', 'ss', null], ['ies', 'i', null], ['ss', 'ss', null], ['s', '', null]]);
  }

  private step1b(w: string): string {
    // NLTK: 'died' → 'die', 'spied' → 'spi'
    if (this.mode === 'nltk' && w.endsWith('ied')) return w.length === 4 ? w.slice(0, -3) + 'ie' : w.slice(0, -3) + 'i';
    if (w.endsWith('eed')) {
      const stem = w.slice(0, -3);
      return measure(stem) > 0 ? stem + 'ee' : w;
    }
    let stem: string | undefined;
    for (const suffix of ['ed', 'ing']) {
      if (w.endsWith(suffix) && containsVowel(w.slice(0, -suffix.length))) {
        stem = w.slice(0, -suffix.length);
        break;
      }
    }
    if (stem === undefined) return w;
    const last = stem[stem.length - 1]!;
    return this.applyRules(stem, [
      ['at', 'ate', null],
      ['bl', 'ble', null],
      ['iz', 'ize', null],
      ['*d', last, () => !'lsz'.includes(last)],
      ['', 'e', (s) => measure(s) === 1 && this.endsCvc(s)],
    ]);
  }

  private step1c(w: string): string {
    // NLTK: y → i only after a consonant that is not the whole stem ('happy' → 'happi', 'enjoy' stays)
    const condition = this.mode === 'nltk'
      ? (s: string) => s.length > 1 && isConsonant(s, s.length - 1)
      : containsVowel;
    return this.applyRules(w, [['y', 'i', condition]]);
  }

  private step2(w: string): string {
    const positive = (s: string): boolean => measure(s) > 0;
    // NLTK applies -alli → -al first and runs step 2 again on the result.
    if (this.mode === 'nltk' && w.endsWith('alli') && positive(w.slice(0, -4))) return this.step2(w.slice(0, -4) + 'al');
    const rules: Rule[] = [
      ['ational', 'ate', positive], ['tional', 'tion', positive], ['enci', 'ence', positive], ['anci', 'ance', positive],
      ['izer', 'ize', positive], ['bli', 'ble', positive], ['alli', 'al', positive], ['entli', 'ent', positive],
      ['eli', 'e', positive], ['ousli', 'ous', positive], ['ization', 'ize', positive], ['ation', 'ate', positive],
      ['ator', 'ate', positive], ['alism', 'al', positive], ['iveness', 'ive', positive], ['fulness', 'ful', positive],
      ['ousness', 'ous', positive], ['aliti', 'al', positive], ['iviti', 'ive', positive], ['biliti', 'ble', positive],
    ];
    if (this.mode === 'nltk') {
      rules.push(['fulli', 'ful', positive]);
      // the 'l' of -logi stays with the stem, so short stems (geo-, theo-) qualify
      rules.push(['logi', 'log', () => positive(w.slice(0, -3))]);
    } else {
      rules.push(['logi', 'log', positive]);
    }
    return this.applyRules(w, rules);
  }

  private step3(w: string): string {
    const positive = (s: string): boolean => measure(s) > 0;
    return this.applyRules(w, [
      ['icate', 'ic', positive], ['ative', '', positive], ['alize', 'al', positive], ['iciti', 'ic', positive],
      ['ical', 'ic', positive], ['ful', '', positive], ['ness', '', positive],
    ]);
  }

  private step4(w: string): string {
    const gt1 = (s: string): boolean => measure(s) > 1;
    return this.applyRules(w, [
      ['al', '', gt1], ['ance', '', gt1], ['ence', '', gt1], ['er', '', gt1], ['ic', '', gt1], ['able', '', gt1],
      ['ible', '', gt1], ['ant', '', gt1], ['ement', '', gt1], ['ment', '', gt1], ['ent', '', gt1],
      ['ion', '', (s) => measure(s) > 1 && (s.endsWith('s') || s.endsWith('t'))],
      ['ou', '', gt1], ['ism', '', gt1], ['ate', '', gt1], ['iti', '', gt1], ['ous', '', gt1], ['ive', '', gt1], ['ize', '', gt1],
    ]);
  }

  /** Both conditions are tried here (the paper's examples need it), unlike the other steps. */
  private step5a(w: string): string {
    if (!w.endsWith('e')) return w;
    const stem = w.slice(0, -1);
    const m = measure(stem);
    if (m > 1 || (m === 1 && !this.endsCvc(stem))) return stem;
    return w;
  }

  private step5b(w: string): string {
    return this.applyRules(w, [['ll', 'l', () => measure(w.slice(0, -1)) > 1]]);
  }
}
