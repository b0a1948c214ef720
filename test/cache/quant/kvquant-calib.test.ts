// kvquant(calib=FILE): offline thresholds and per-layer datatypes from a calibration file, checked against the model.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Codec } from '../../../src/cache/codec.js';
import { writeCalibration, type Calibration, type StreamCalibration } from '../../../src/cache/quant/calibfile.js';
import { rangeParams } from '../../../src/kernels/packed/quantize.js';
import { CODECS, parseSpec } from '../../../src/cache/registry.js';
import { withDefaults } from '../../../src/cache/spec.js';
import { CalibrationError, UsageError } from '../../../src/errors.js';
import type { Kernels } from '../../../src/kernels/api.js';
import { createKernels } from '../../../src/kernels/index.js';
import { ropeOf } from '../../../src/kernels/rope.js';
import type { ModelConfig } from '../../../src/model/config.js';
import type { ModelIdentity } from '../../../src/model/config.js';
import { put, randomF32, rng } from '../../kernels/util.js';

const c = {
  architecture: 'llama', hiddenSize: 128, intermediateSize: 256, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 32,
  vocabSize: 100, maxContext: 4096, rmsEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: true, qkvBias: false,
} as ModelConfig;
const width = c.numKvHeads * c.headDim;
const identity: ModelIdentity = {
  name: 'tiny', architecture: 'llama', numLayers: 2, hiddenSize: 128, numHeads: 4, numKvHeads: 2, headDim: 32, vocabSize: 100,
  ropeLayout: 'half', weights: 'ab'.repeat(32),
};
// signposts with exact ends, so a decoded row's range gives back its scale and zero
const LUTS: Record<number, number[]> = { 2: [-1, -0.7, 0.2, 1], 3: [-1, -0.8, -0.5, -0.1, 0.1, 0.3, 0.6, 1] };
const r = rng(5);
const stream = (keys: boolean): StreamCalibration => ({
  ...(keys ? { lo: Float32Array.from({ length: width }, () => -1 - r()), hi: Float32Array.from({ length: width }, () => 1 + r()) } : {}),
  luts: LUTS, qnorm: { 2: [-0.9, -0.6, 0.3, 0.95], 3: LUTS[3]! },
});
const calibration: Calibration = {
  model: identity, data: 'synthetic', tokens: 100, outliers: 0, fisher: true, seed: 0, bits: [2, 3],
  layers: [0, 1].map(() => ({ keys: stream(true), rotatedKeys: stream(true), values: stream(false) })),
};
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kvpack-kvquant-calib-'));
const file = path.join(dir, 'tiny.calib');
writeCalibration(file, calibration);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function makeCodec(k: Kernels, spec: string, model: ModelIdentity = identity): Codec {
  const part = parseSpec(spec.replace('FILE', JSON.stringify(file))).codec;
  const kind = CODECS.get(part.name)!;
  return kind.create(withDefaults(part, kind.schema), { kernels: k, config: c, capacity: 32, rope: ropeOf(c), ropeOnRead: false, model: () => model });
}

/** Writes n random tokens to layer 1 at positions 0.. and returns the codec. */
function filled(k: Kernels, spec: string, n: number): Codec {
  const codec = makeCodec(k, spec);
  const [kp, vp] = [put(k, randomF32(rng(9), n * width, 1.5)), put(k, randomF32(rng(10), n * width, 1))];
  const pp = put(k, Int32Array.from({ length: n }, (_, i) => i));
  codec.write(1, 0, n, kp, vp, pp);
  for (const p of [kp, vp, pp]) k.arena.free(p);
  return codec;
}

const onGrid = (y: number, lut: readonly number[]): boolean => lut.some((l) => Math.abs(l - y) < 2e-3);

describe('kvquant(calib=FILE)', () => {
  let k: Kernels;
  beforeAll(async () => {
    k = await createKernels({ backend: 'reference' });
  });

  it('quantizes keys per channel against the file\'s thresholds and layer datatype, from the first token', () => {
    const codec = filled(k, 'kvquant(bits=2,prerope=false,sinks=0,calib=FILE)', 6); // post-RoPE keys are stored as they are read
    const keys = calibration.layers[1]!.rotatedKeys;
    for (let t = 0; t < 6; t++) {
      for (let h = 0; h < c.numKvHeads; h++) {
        const row = codec.readRow(1, h, t, 'key');
        for (let i = 0; i < c.headDim; i++) {
          const p = rangeParams('unit', 2, keys.lo![h * c.headDim + i]!, keys.hi![h * c.headDim + i]!);
          expect(onGrid((row[i]! - p.z) / p.s, LUTS[2]!), `token ${t} head ${h} channel ${i}`).toBe(true);
        }
      }
    }
    codec.free();
  });

  it('decodes values through the file\'s datatype, or its Q-Norm signposts with qnorm=true', () => {
    for (const [qnorm, lut] of [[false, LUTS[3]!], [true, LUTS[3]!], [false, LUTS[2]!], [true, calibration.layers[1]!.values.qnorm[2]!]] as const) {
      const bits = lut.length === 8 ? 3 : 2;
      const codec = filled(k, `kvquant(bits=${bits},qnorm=${qnorm},sinks=0,calib=FILE)`, 4);
      for (let t = 0; t < 4; t++) {
        const row = Array.from(codec.readRow(1, 0, t, 'value'));
        // the decoded row's ends are the ends of the signposts: they give back scale and zero
        const s = (Math.max(...row) - Math.min(...row)) / (lut.at(-1)! - lut[0]!);
        const z = Math.min(...row) - lut[0]! * s;
        for (const v of row) expect(onGrid((v - z) / s, lut)).toBe(true);
      }
      codec.free();
    }
  });

  it('refuses a file made for another model, naming both', () => {
    const other = { ...identity, name: 'other', weights: 'cd'.repeat(32) };
    expect(() => makeCodec(k, 'kvquant(calib=FILE)', other)).toThrow(CalibrationError);
    expect(() => makeCodec(k, 'kvquant(calib=FILE)', other)).toThrow(/calibrated for tiny .* not for the model in use, other/);
  });

  it.each([
    ['kvquant(bits=2,outliers=0.01,calib=FILE)', UsageError, /calibrated with outliers=0/],
    ['kvquant(bits=4,calib=FILE)', CalibrationError, /holds datatypes for 2, 3 bits, not 4/],
    ['kvquant(datatype=nuq)', UsageError, /needs a calibration file/],
    ['kvquant(bits=2,datatype=nf,qnorm=true,calib=FILE)', UsageError, /Q-Norm statistics are for its own datatypes/],
  ])('%s is refused with a clear error', (spec, type, message) => {
    expect(() => makeCodec(k, spec)).toThrow(type);
    expect(() => makeCodec(k, spec)).toThrow(message);
  });
});
