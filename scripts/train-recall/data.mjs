// Training sequences for the recall model: token ids built with kvpack's own tokenizer and its own
// prompt builders (passkey, needle, multikey), so the formats match the eval exactly, but with other
// filler (C4 docs 1000-1999 and generated sentences; never the eval's filler or haystack).
// Usage: node scripts/train-recall/data.mjs --out DIR --length L --sequences N --seed S [--mix copy=0.5+plain=0.5]
// Writes DIR/NAME.ids (uint16, N×L) and DIR/NAME.mask (uint8: on answer tokens the kind's number in KINDS,
// else 0), NAME being L-S, or L-S-MIX when --mix is given.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { HfTokenizer } from '../../dist/tokenizer/hf.js';
import { passkeyPrompt } from '../../dist/eval/passkey.js';
import { needlePrompt } from '../../dist/eval/needle.js';
import { multikeyPrompt } from '../../dist/eval/multikey.js';
import { sharedDataDir } from '../../dist/eval/data.js';
import { seededRandom } from '../../dist/util/random.js';
import { defaultModelPath } from '../../dist/engine/model.js';

const { values: a } = parseArgs({
  options: {
    out: { type: 'string' },
    length: { type: 'string' },
    sequences: { type: 'string' },
    seed: { type: 'string', default: '1' },
    mix: { type: 'string' },
    tokenizer: { type: 'string', default: path.join(defaultModelPath(), 'tokenizer.json') }, // ref-6m's: byte-level BPE, 8192 entries
  },
});
const L = Number(a.length);
const N = Number(a.sequences);
const seed = Number(a.seed);
if (!a.out || !(L >= 64) || !(N >= 1) || !Number.isInteger(seed)) {
  console.error('usage: data.mjs --out DIR --length L(>=64) --sequences N --seed S');
  process.exit(2);
}

const tokenizer = new HfTokenizer(fs.readFileSync(a.tokenizer, 'utf8'), a.tokenizer);
const model = { tokenizer }; // the prompt builders read only the tokenizer
const enc = (t) => tokenizer.encode(t, { addBos: false });
const random = seededRandom(seed);
const int = (lo, hi) => lo + Math.floor(random() * (hi - lo + 1));
const pick = (xs) => xs[Math.floor(random() * xs.length)];

// C4 docs 1000-1999: docs 0-999 are kvpack's C4 evaluation set
const c4 = fs.readFileSync(path.join(sharedDataDir(), 'c4/c4_validation_2k.jsonl'), 'utf8').split('\n').filter(Boolean).slice(1000).map((l) => JSON.parse(l).text);
const EOT = 0;
const text = [];
for (const doc of c4) text.push(...enc(doc), EOT);
const words = [...new Set(c4.join(' ').toLowerCase().match(/\b[a-z]{4,9}\b/g))];
const sentences = c4.join(' ').split(/(?<=[.!?])\s+/).filter((s) => s.length > 20 && s.length < 120);

const span = (n) => {
  const at = int(0, text.length - n - 1);
  return text.slice(at, at + n);
};
const number = (digits) => int(10 ** (digits - 1), 10 ** digits - 1);
const templates = [
  (w) => `The ${w[0]} is ${w[1]}.`,
  (w) => `A ${w[0]} sat by the ${w[1]}.`,
  (w) => `We saw the ${w[0]} near the ${w[1]}.`,
  (w) => `Here is the ${w[0]}.`,
  (w) => `The ${w[0]} and the ${w[1]} went ${w[2]}.`,
];
// a repeated filler unit: generated sentences or a C4 sentence, never the eval's own
const fillerUnit = () =>
  random() < 0.6 ? Array.from({ length: int(1, 5) }, () => pick(templates)([pick(words), pick(words), pick(words)])).join(' ') : pick(sentences);

// Each maker returns { ids, answer } (answer: [from, to) indices to weight) of at most `n` tokens.
const makers = {
  copy(n) {
    const len = int(Math.min(8, n >> 2), Math.min(256, n >> 1));
    const x = random() < 0.5 ? span(len) : Array.from({ length: len }, () => int(17, 8191));
    const gap = span(int(0, n - 2 * len));
    return { ids: [...x, ...gap, ...x], answer: [len + gap.length + 1, 2 * len + gap.length] };
  },
  passkey(n) {
    const key = random() < 0.7 ? int(1, 50000) : number(int(1, 7));
    const prompt = passkeyPrompt(model, n - 8, int(0, 100), key, fillerUnit());
    return withAnswer(prompt, key);
  },
  needle(n) {
    const value = number(7);
    const at = int(0, text.length - n);
    const prompt = needlePrompt(model, n - 10, int(0, 100), pick(words), value, 0, text.slice(at, at + n));
    return withAnswer(prompt, value);
  },
  multikey(n) {
    const count = Math.max(1, Math.min(int(1, 24), Math.floor(n / 64)));
    const keys = new Set();
    while (keys.size < count) keys.add(random() < 0.5 ? `${pick(words)}-${pick(words)}` : pick(words));
    const pairs = [...keys].map((key) => ({ key, value: number(int(4, 7)) }));
    const asked = pick(pairs);
    const at = int(0, text.length - n);
    const depths = pairs.map(() => int(0, 100));
    const prompt = multikeyPrompt(model, n - 10, pairs, depths, asked.key, 0, text.slice(at, at + n));
    return withAnswer(prompt, asked.value);
  },
  plain(n) {
    return { ids: span(n), answer: [0, 0] };
  },
};

function withAnswer(prompt, value) {
  const answer = enc(` ${value}.`);
  return { ids: [...prompt, ...answer], answer: [prompt.length, prompt.length + answer.length] };
}

// shares of each kind of example: the default, or --mix's kind=share list (the shares are normalised)
const given = a.mix ? a.mix.split('+').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]) : undefined;
if (given?.some(([k, v]) => !(k in makers) || !(v >= 0))) {
  console.error(`--mix must be kind=share pairs joined by +, kinds ${Object.keys(makers).join(', ')}; got ${a.mix}`);
  process.exit(2);
}
const total = given?.reduce((n, [, v]) => n + v, 0);
const mix = given?.map(([k, v]) => [k, v / total]) ?? [
  ['copy', 0.2],
  ['passkey', 0.2],
  ['needle', 0.15],
  ['multikey', 0.2],
  ['plain', 0.25],
];
function kind() {
  let r = random();
  for (const [k, p] of mix) if ((r -= p) < 0) return k;
  return 'plain';
}

// the mask's codes, which train.py reports accuracy by
const KINDS = ['copy', 'passkey', 'needle', 'multikey'];
const ids = new Uint16Array(N * L);
const mask = new Uint8Array(N * L);
for (let s = 0; s < N; s++) {
  const seq = [];
  const m = [];
  while (seq.length < L) {
    const rem = L - seq.length;
    const k = rem < 96 ? 'plain' : kind();
    const n = k === 'plain' ? rem : random() < 0.5 ? rem : int(96, rem);
    let ex;
    try {
      ex = makers[k](n);
    } catch {
      ex = makers.plain(Math.min(rem, 64));
    }
    const code = KINDS.indexOf(k) + 1;
    const w = ex.ids.map((_, i) => (i >= ex.answer[0] && i < ex.answer[1] ? code : 0));
    seq.push(...ex.ids, EOT);
    m.push(...w, 0);
  }
  ids.set(seq.slice(0, L), s * L);
  mask.set(m.slice(0, L), s * L);
}
fs.mkdirSync(a.out, { recursive: true });
const base = path.join(a.out, a.mix ? `${L}-${seed}-${a.mix}` : `${L}-${seed}`);
fs.writeFileSync(`${base}.ids.tmp`, ids);
fs.writeFileSync(`${base}.mask.tmp`, mask);
fs.renameSync(`${base}.mask.tmp`, `${base}.mask`);
fs.renameSync(`${base}.ids.tmp`, `${base}.ids`); // last: its presence marks the shard complete
console.log(`wrote ${N} sequences of ${L} tokens (${text.length} C4 tokens, ${words.length} words)`);
