import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { BLOCK_FORMATS, dequantize, rowBytes, type GgmlFormat } from '../../../src/kernels/ggml/index.js';
import { seededRandom } from '../../../src/util/random.js';

/** llama.cpp quantizes `x` ([rows × cols]) and dequantizes it again: its bytes and its values. */
export function llamaCppBlocks(f: GgmlFormat, x: Float32Array, rows: number, cols: number): { bytes: Uint8Array; values: Float32Array } {
  const r = spawnSync('python3', ['test/kernels/ggml/llama-cpp-blocks.py', String(f.id), f.name, String(rows), String(cols)], {
    input: new Uint8Array(x.buffer, x.byteOffset, x.byteLength),
    maxBuffer: 1 << 28,
  });
  if (r.status !== 0) throw new Error(`llama-cpp-blocks.py failed: ${r.stderr.toString()}`);
  const out = new Uint8Array(r.stdout);
  const n = rowBytes(f, cols) * rows;
  expect(out.length).toBe(n + rows * cols * 4);
  return { bytes: out.slice(0, n), values: new Float32Array(out.slice(n).buffer) };
}

/** Rows that exercise every code path: gaussian rows at different scales, heavy outliers, constant and zero blocks. */
function testRows(rows: number, cols: number): Float32Array {
  const next = seededRandom(13);
  const normal = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  const x = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const scale = 10 ** ((r % 4) - 2); // weights' range; f16 scales lose precision far below it
    for (let c = 0; c < cols; c++) {
      let v = normal() * scale;
      if (next() < 0.01) v *= 20;
      if (r === 1 && c < 64) v = 0;
      if (r === 2 && c < 96) v = 0.25;
      x[r * cols + c] = v;
    }
  }
  return x;
}

/** Relative RMS error of each format on gaussian data (quantization noise / signal): a loose upper bound per format. */
const MAX_RELATIVE_RMS: Record<string, number> = {
  Q4_0: 0.2, Q4_1: 0.17, Q5_0: 0.1, Q5_1: 0.08, Q8_0: 0.015, Q2_K: 0.5, Q3_K: 0.3, Q4_K: 0.14, Q5_K: 0.07, Q6_K: 0.04,
  IQ4_NL: 0.15, IQ4_XS: 0.15,
};

describe('GGML block formats against llama.cpp', () => {
  const rows = 10;
  const cols = 512;
  const x = testRows(rows, cols);
  for (const f of Object.values(BLOCK_FORMATS)) {
    it(`${f.name}: dequantizes llama.cpp's blocks to exactly llama.cpp's values`, () => {
      const ref = llamaCppBlocks(f, x, rows, cols);
      const got = dequantize(f, ref.bytes, rows, cols);
      let mismatches = 0;
      for (let i = 0; i < got.length; i++) if (!Object.is(got[i], ref.values[i])) mismatches++;
      expect(mismatches).toBe(0);
    });
    it(`${f.name}: round trip stays within the format's error`, () => {
      const ref = llamaCppBlocks(f, x, rows, cols);
      const got = dequantize(f, ref.bytes, rows, cols);
      for (let r = 0; r < rows; r++) {
        let err = 0;
        let sig = 0;
        for (let c = 0; c < cols; c++) {
          err += (got[r * cols + c]! - x[r * cols + c]!) ** 2;
          sig += x[r * cols + c]! ** 2;
        }
        expect(Math.sqrt(err / sig), `row ${r}`).toBeLessThan(MAX_RELATIVE_RMS[f.name]!);
      }
    });
  }
});
