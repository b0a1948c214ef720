// Test-only GGUF metadata reader (key/value section only), so tokenizer tests do not depend on the model loader.
import { readFileSync } from 'node:fs';

export type MetaValue = number | bigint | boolean | string | MetaValue[];

export function readGgufMeta(path: string): Map<string, MetaValue> {
  const buf = readFileSync(path);
  let off = 0;
  const u32 = () => { const v = buf.readUInt32LE(off); off += 4; return v; };
  const u64 = () => { const v = buf.readBigUInt64LE(off); off += 8; return v; };
  const str = () => { const n = Number(u64()); const s = buf.toString('utf8', off, off + n); off += n; return s; };
  const value = (type: number): MetaValue => {
    switch (type) {
      case 0: return buf.readUInt8(off++);
      case 1: return buf.readInt8(off++);
      case 2: { const v = buf.readUInt16LE(off); off += 2; return v; }
      case 3: { const v = buf.readInt16LE(off); off += 2; return v; }
      case 4: return u32();
      case 5: { const v = buf.readInt32LE(off); off += 4; return v; }
      case 6: { const v = buf.readFloatLE(off); off += 4; return v; }
      case 7: return buf.readUInt8(off++) !== 0;
      case 8: return str();
      case 9: {
        const t = u32();
        const n = Number(u64());
        const out: MetaValue[] = new Array(n);
        for (let i = 0; i < n; i++) out[i] = value(t);
        return out;
      }
      case 10: return u64();
      case 11: { const v = buf.readBigInt64LE(off); off += 8; return v; }
      case 12: { const v = buf.readDoubleLE(off); off += 8; return v; }
      default: throw new Error(`${path}: unknown GGUF value type ${type}`);
    }
  };
  if (buf.toString('latin1', 0, 4) !== 'GGUF') throw new Error(`${path}: not GGUF`);
  off = 4;
  u32(); // version
  u64(); // tensor count
  const kvCount = Number(u64());
  const meta = new Map<string, MetaValue>();
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    meta.set(key, value(u32()));
  }
  return meta;
}

/** A GGUF's vocabulary as both tokenizers take it, once its `tokenizer.ggml.model` is `model`; `meta` for the rest. */
export function ggufVocab(path: string, model: 'gpt2' | 'llama') {
  const meta = readGgufMeta(path);
  if (meta.get('tokenizer.ggml.model') !== model) throw new Error(`${path}: tokenizer.ggml.model is not ${model}`);
  const vocab = {
    tokens: meta.get('tokenizer.ggml.tokens') as string[],
    types: meta.get('tokenizer.ggml.token_type') as number[],
    bos: meta.get('tokenizer.ggml.bos_token_id') as number,
    eos: [meta.get('tokenizer.ggml.eos_token_id') as number],
    file: path,
  };
  return { meta, vocab };
}
