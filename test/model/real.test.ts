// The shared reference models load from every format they ship in, and the formats agree.
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Checkpoint } from '../../src/model/checkpoint.js';
import { loadCheckpoint } from '../../src/model/load.js';
import { TensorNames as N } from '../../src/model/tensor.js';
import { REF6M, STORIES } from './fixtures.js';

const equalBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);

describe('ref-6m: HF directory and GGUF', () => {
  let hf: Checkpoint;
  let gguf: Checkpoint;
  beforeAll(async () => {
    hf = await loadCheckpoint(REF6M);
    gguf = await loadCheckpoint(path.join(REF6M, 'ref-6m.gguf'));
  });

  it('reads the documented config from both', () => {
    for (const c of [hf.config, gguf.config]) {
      expect(c).toMatchObject({
        architecture: 'llama', hiddenSize: 256, intermediateSize: 704, numLayers: 6, numHeads: 4, numKvHeads: 2,
        headDim: 64, vocabSize: 8192, maxContext: 2048, ropeTheta: 10000, tiedEmbeddings: true, qkvBias: false,
      });
      expect(c.rmsEps).toBeCloseTo(1e-5, 10);
    }
    expect(hf.format).toBe('hf');
    expect(gguf.format).toBe('gguf');
    expect(hf.config.ropeLayout).toBe('half');
    expect(gguf.config.ropeLayout).toBe('interleaved');
  });

  it('has the same tensor names and shapes in both', () => {
    expect([...gguf.tensors.keys()].sort()).toEqual([...hf.tensors.keys()].sort());
    for (const [name, t] of hf.tensors) {
      expect(gguf.tensors.get(name)!.shape, name).toEqual(t.shape);
      expect(t.dtype).toBe('f32');
    }
    expect(hf.tensors.has(N.lmHead)).toBe(false);
  });

  it('has bit-identical embedding, norms, V, O and FFN weights', () => {
    const same: string[] = [N.embed, N.finalNorm];
    for (let l = 0; l < 6; l++) same.push(N.attnNorm(l), N.ffnNorm(l), N.wv(l), N.wo(l), N.wGate(l), N.wUp(l), N.wDown(l));
    for (const name of same) expect(equalBytes(hf.tensors.get(name)!.data, gguf.tensors.get(name)!.data), name).toBe(true);
  });

  it("has Q and K rows in llama.cpp's permuted order: GGUF row 2i+j of a head is HF row j*headDim/2+i", () => {
    const { headDim, hiddenSize } = hf.config;
    const rowBytes = hiddenSize * 4;
    const half = headDim / 2;
    for (let l = 0; l < 6; l++) {
      for (const name of [N.wq(l), N.wk(l)]) {
        const a = hf.tensors.get(name)!.data;
        const b = gguf.tensors.get(name)!.data;
        expect(equalBytes(a, b), `${name} should differ before permuting`).toBe(false);
        const heads = a.length / rowBytes / headDim;
        for (let h = 0; h < heads; h++) {
          for (let i = 0; i < half; i++) {
            for (let j = 0; j < 2; j++) {
              const g = (h * headDim + 2 * i + j) * rowBytes;
              const f = (h * headDim + j * half + i) * rowBytes;
              if (!equalBytes(b.subarray(g, g + rowBytes), a.subarray(f, f + rowBytes))) {
                throw new Error(`${name}: head ${h} pair ${i}.${j} does not match`);
              }
            }
          }
        }
      }
    }
  });

  it('makes tensors views of the file buffer, not copies', () => {
    const embed = hf.tensors.get(N.embed)!.data;
    const wq = hf.tensors.get(N.wq(0))!.data;
    expect(embed.buffer).toBe(wq.buffer);
    expect(embed.buffer.byteLength).toBeGreaterThanOrEqual(26_000_000);
  });

  it('builds the same tokenizer from tokenizer.json and the GGUF metadata', () => {
    const text = 'The State of the Union is strong.';
    expect(hf.tokenizer.vocabSize).toBe(8192);
    expect(gguf.tokenizer.vocabSize).toBe(8192);
    expect(gguf.tokenizer.encode(text)).toEqual(hf.tokenizer.encode(text));
    expect(gguf.tokenizer.addBosByDefault).toBe(false);
  });
});

describe('stories260K: llama2.c .bin and GGUF', () => {
  let bin: Checkpoint;
  let gguf: Checkpoint;
  beforeAll(async () => {
    bin = await loadCheckpoint(path.join(STORIES, 'stories260K.bin'));
    gguf = await loadCheckpoint(path.join(STORIES, 'stories260K.gguf'));
  });

  it('reads the same config, except the context length each file states', () => {
    const shape = {
      architecture: 'llama', hiddenSize: 64, intermediateSize: 172, numLayers: 5, numHeads: 8, numKvHeads: 4,
      headDim: 8, vocabSize: 512, ropeTheta: 10000, ropeLayout: 'interleaved', qkvBias: false,
    };
    expect(bin.config).toMatchObject({ ...shape, maxContext: 512, tiedEmbeddings: true });
    expect(gguf.config).toMatchObject({ ...shape, maxContext: 2048 });
    expect(bin.config.rmsEps).toBeCloseTo(1e-5, 10);
    expect(gguf.config.rmsEps).toBeCloseTo(1e-5, 10);
  });

  it('has bit-identical tensors under the same canonical names', () => {
    // The GGUF converter wrote the shared classifier out as output.weight, so it is untied there.
    expect(gguf.config.tiedEmbeddings).toBe(false);
    expect(equalBytes(gguf.tensors.get(N.lmHead)!.data, bin.tensors.get(N.embed)!.data)).toBe(true);
    const ggufNames = [...gguf.tensors.keys()].filter((n) => n !== N.lmHead).sort();
    expect(ggufNames).toEqual([...bin.tensors.keys()].sort());
    for (const [name, t] of bin.tensors) {
      const g = gguf.tensors.get(name)!;
      expect(g.shape, name).toEqual(t.shape);
      expect(equalBytes(g.data, t.data), name).toBe(true);
    }
  });

  it('finds tok512.bin beside the .bin and agrees with the GGUF tokenizer', () => {
    expect(bin.tokenizer.vocabSize).toBe(512);
    expect(bin.tokenizer.bos).toBe(1);
    expect(gguf.tokenizer.bos).toBe(1);
    const text = 'Once upon a time, there was a little girl.';
    expect(bin.tokenizer.encode(text)).toEqual(gguf.tokenizer.encode(text));
  });
});
