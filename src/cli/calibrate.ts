import fs from 'node:fs';
import path from 'node:path';
import { storedCalibrationFile, writeCalibration } from '../cache/quant/calibfile.js';
import { calibrate } from '../calibrate/calibrate.js';
import { calibrationSamples, CALIBRATION_SETS, defaultCalibrationSet } from '../calibrate/data.js';
import { UsageError } from '../errors.js';
import type { CodeBits } from '../kernels/packed/pack.js';
import { Progress } from '../util/progress.js';
import { intOption, MODEL_HELP, MODEL_OPTIONS, numberOption, noPositionals, parse } from './args.js';
import { loadModelFromOptions } from './load.js';

const HELP = `Usage: kvpack calibrate [--model M] [--data D] [--samples 16] [--ctx 2048] [--bits 2,3,4]
                        [--outliers 0.01] [--unweighted] [--seed 0] [--out FILE]

KVQuant's offline calibration, for kvquant(calib=FILE): per layer, key thresholds per channel from
percentiles of the calibration keys (before and after RoPE), and for keys and values a non-uniform
datatype per bit width from k-means over the normalised non-outlier numbers, each weighted by its
Fisher information (the squared gradient of the language-model loss, from a backward pass), with
its Q-Norm signposts. The file records the model it belongs to. Without --out it is saved in the
calibration store, KVPACK_CACHE_DIR (default ~/.cache/kvpack)/calibration/<sha256 of the weights>.calib,
where kvquant without calib= finds it by itself.
  --data        ${CALIBRATION_SETS.join(' | ')} | a text file (default: stories260k-calibration for
                stories260K, c4-calibration, C4 documents 1000-1999, for other models)
  --ctx         tokens per sample (default: 2048, or the model's context if shorter)
  --unweighted  plain k-means instead of Fisher-weighted
${MODEL_HELP}
An interrupted run resumes from FILE.partial.
`;

export async function calibrateCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse('calibrate', argv, {
    ...MODEL_OPTIONS,
    data: { type: 'string' },
    samples: { type: 'string' },
    ctx: { type: 'string' },
    bits: { type: 'string' },
    outliers: { type: 'string' },
    unweighted: { type: 'boolean' },
    seed: { type: 'string' },
    out: { type: 'string' },
  });
  if (values.help) return void process.stdout.write(HELP);
  noPositionals('calibrate', positionals);
  const samples = intOption('samples', values.samples, 16, 1);
  const outliers = numberOption('outliers', values.outliers, 0.01, 0, 0.5);
  const seed = intOption('seed', values.seed, 0, 0);
  const bits = (values.bits ?? '2,3,4').split(',').map((b) => {
    if (!['2', '3', '4'].includes(b.trim())) throw new UsageError(`--bits takes a list of 2, 3 and 4, got "${values.bits}"`);
    return Number(b) as CodeBits;
  });
  const model = await loadModelFromOptions(values);
  try {
    const ctx = Math.min(intOption('ctx', values.ctx, 2048, 2), model.config.maxContext);
    const data = values.data ?? defaultCalibrationSet(model.source);
    const seqs = calibrationSamples(data, model.tokenizer, samples, ctx);
    const identity = model.identity();
    const out = values.out ?? storedCalibrationFile(identity);
    fs.mkdirSync(path.dirname(out), { recursive: true }); // its .partial state is written there as it goes
    const name = identity.name;
    const fisher = !values.unweighted;
    let bar: Progress | undefined;
    let reported = 0;
    const result = calibrate(model, {
      model: identity,
      samples: seqs, data: `${data}, ${seqs.length} × ${ctx} tokens`, bits, outliers, fisher, seed,
      stateFile: `${out}.partial`,
      onProgress: (done, total) => {
        if (!bar) {
          bar = new Progress({ total, label: `calibrate ${name}`, unit: 'seq' });
          bar.skip(done);
        } else {
          bar.tick(done - reported);
        }
        reported = done;
      },
    });
    bar?.done();
    writeCalibration(out, result);
    const store = values.out === undefined ? '; kvquant without calib= uses it for this model' : '';
    process.stdout.write(`${out}: ${fisher ? 'Fisher-weighted' : 'plain'} k-means datatypes for ${bits.join(', ')} bits and key thresholds (outliers ${outliers}) of ${name}, from ${result.tokens} tokens of ${data}${store}\n`);
  } finally {
    await model.close();
  }
}
