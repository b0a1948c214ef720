import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModel, type Model } from '../../src/engine/model.js';
import { REF6M_DIR } from './helpers.js';

/** Logits after each step of a prompt then decoded tokens, as one array. */
function run(model: Model, cache: string, ids: number[], streaming = false): Float32Array[] {
  const session = model.session({ cache, streaming, chunkSize: 16 });
  const out = [session.feed(ids.slice(0, 40)).slice()];
  for (const id of ids.slice(40)) out.push(session.feed([id]).slice());
  session.dispose();
  return out;
}

describe('a model split over several WebAssembly memories', () => {
  const models: Model[] = [];
  beforeAll(async () => {
    for (const layersPerMemory of [undefined, 4, 1]) models.push(await loadModel(REF6M_DIR, { threads: 2, layersPerMemory }));
  });
  afterAll(async () => {
    for (const m of models) await m.close();
  });

  it('holds its layers in separate memories', () => {
    expect(models.map((m) => m.weights.groups.count)).toEqual([1, 2, 6]);
    const memories = new Set(models[2]!.weights.groups.list.map((g) => g.kernels.arena.memory));
    expect(memories.size).toBe(6);
    expect(models[2]!.info().weightBytes).toBe(models[0]!.info().weightBytes);
  });

  it('gives the same logits as one memory, bit for bit, for float, quantized, evicting and streaming caches', () => {
    const [one, ...split] = models;
    const ids = one!.tokenizer.encode('Once upon a time there was a little town by the sea, and every morning the boats went out to fish. '.repeat(3)).slice(0, 48);
    const cases: [string, boolean][] = [['full', false], ['h2o(budget=24)+fp16', false], ['kvquant(bits=2)', false], ['window(sinks=4,recent=20)', true]];
    for (const [cache, streaming] of cases) {
      const expected = run(one!, cache, ids, streaming);
      for (const model of split) {
        const got = run(model, cache, ids, streaming);
        expect(got.length).toBe(expected.length);
        got.forEach((logits, i) => expect(logits, `${cache}, ${model.weights.groups.count} memories, step ${i}`).toEqual(expected[i]));
      }
    }
  });

  it('counts the cache across every memory', () => {
    const [one, split] = [models[0]!, models[2]!];
    const ids = one.tokenizer.encode('The boats went out to fish and came back in the evening.');
    const a = one.session({ cache: 'int(bits=4)' });
    const b = split.session({ cache: 'int(bits=4)' });
    a.feed(ids);
    b.feed(ids);
    expect(b.cache.bytes()).toBe(a.cache.bytes());
    expect(b.cache.bytes()).toBeGreaterThan(0);
  });

  it('counts the tables a never-evicting pre-RoPE cache keeps in each memory (slot indices, rotations)', () => {
    const [one, split] = [models[0]!, models[2]!];
    const ids = one.tokenizer.encode('The boats went out to fish and came back in the evening.');
    const spec = 'kvquant(bits=2)'; // reads slot positions to rotate its pre-RoPE keys; evicts nothing
    const a = one.session({ cache: spec });
    const b = split.session({ cache: spec });
    a.feed(ids);
    b.feed(ids);
    const c = one.config;
    const slotTable = c.numKvHeads * a.cache.capacity * 4; // Int32 per slot and KV head
    const ropeTables = (a.cache as unknown as { codec: { ropeTables: { bytes(): number } } }).codec.ropeTables.bytes();
    expect(b.cache.capacity).toBe(a.cache.capacity);
    expect(b.cache.bytes() - a.cache.bytes()).toBe((split.weights.groups.count - 1) * (slotTable + ropeTables));
  });
});
