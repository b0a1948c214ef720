// The shipped recall model from a training checkpoint's HF directory (f32): the same weights as an f16
// HF directory and an f16 GGUF (Q/K rows in llama.cpp's RoPE layout), written by kvpack's own writers.
// Usage: node scripts/train-recall/export.mjs [SRC_HF_DIR] [OUT_DIR]   (defaults: /tmp/recall-ckpt/hf, models/recall)
import fs from 'node:fs';
import path from 'node:path';
import { loadHfDir } from '../../dist/model/hf.js';
import { writeHfDir, writeLlamaGguf } from '../../dist/dev/write.js';

const src = process.argv[2] ?? '/tmp/recall-ckpt/hf';
const out = process.argv[3] ?? 'models/recall';
const ck = await loadHfDir(src);
const weights = new Map();
for (const [name, t] of ck.tensors) {
  if (t.dtype !== 'f32') throw new Error(`${src}: tensor ${name} is ${t.dtype}, expected the trainer's f32`);
  weights.set(name, { shape: t.shape, values: new Float32Array(Uint8Array.from(t.data).buffer) });
}
const model = { config: ck.config, dtype: 'F16', seed: 0, weights };
const tokenizerJson = path.join(src, 'tokenizer.json');
const ids = { bos: 0, eos: 0 }; // <|endoftext|>; the tokenizer adds no BOS
fs.mkdirSync(out, { recursive: true });
await writeHfDir(out, model, tokenizerJson, ids);
await writeLlamaGguf(path.join(out, 'recall.gguf'), model, { tokenizerJson, pre: 'smollm', ...ids, addBos: false }, { name: 'recall' });
const training = path.join(src, 'training.json');
if (fs.existsSync(training)) fs.copyFileSync(training, path.join(out, 'training.json'));
for (const f of fs.readdirSync(out)) console.log(`${path.join(out, f)}  ${(fs.statSync(path.join(out, f)).size / 1e6).toFixed(2)} MB`);
