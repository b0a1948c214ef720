import { expect, it } from 'vitest';
import { encode, GGML, ggufBytes, ggufName, randomWeights } from '../../src/dev/write.js';
import { NumericError } from '../../src/errors.js';
import { Model } from '../../src/engine/model.js';
import { ggufCheckpoint } from '../../src/model/gguf.js';
import { ggufMetadata, TINY } from '../model/fixtures.js';

it('finite weights whose activations overflow raise a NumericError, never NaN logits', async () => {
  // every matrix scaled to ~1e30: finite in f32, but the projections overflow to ±Inf and then NaN
  const tensors = [...randomWeights(TINY)].map(([name, t]) => ({
    name: ggufName(name), shape: t.shape, type: GGML.F32, data: encode(t.shape.length === 2 ? t.values.map((x) => x * 1e30) : t.values, 'F32'),
  }));
  const model = await Model.fromCheckpoint(ggufCheckpoint(ggufBytes({ metadata: ggufMetadata(TINY), tensors }), 'big.gguf'), { backend: 'reference' });
  const session = model.session();
  expect(() => session.feed([1, 5, 7])).toThrow(NumericError);
  expect(() => model.session().score([1, 5, 7, 9])).toThrow(/logits at position \d+ are not finite/);
  await model.close();
});
