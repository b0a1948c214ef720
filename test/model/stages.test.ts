import { describe, expect, it } from 'vitest';
import type { Kernels } from '../../src/kernels/api.js';
import { Arena } from '../../src/kernels/arena.js';
import { LayerGroups } from '../../src/cache/layer-groups.js';
import { Activations } from '../../src/model/forward.js';
import type { ModelConfig } from '../../src/model/config.js';
import type { Weights } from '../../src/model/weights.js';

const config = { hiddenSize: 64, intermediateSize: 128, numHeads: 4, numKvHeads: 2, headDim: 16, vocabSize: 256 } as ModelConfig;

/** Weights of no layers' worth in memories of at most `pages` 64 KiB pages each, two layers per memory. */
function weights(...pages: number[]): Weights {
  const memories = pages.map((p) => ({ arena: new Arena(new WebAssembly.Memory({ initial: 1, maximum: p }), 1024) }) as Kernels);
  const groups = LayerGroups.fill(memories, 2, 2 * pages.length).map((g) => ({ ...g, layers: [] }));
  return { groups } as unknown as Weights;
}

const used = (w: Weights) => w.groups.list.map((g) => g.kernels.arena.used);

describe('Activations', () => {
  it('gives each layer group its activation buffers and frees them all', () => {
    const w = weights(64, 64);
    const act = new Activations(w, config, 8);
    expect(act.scratch).toHaveLength(2);
    expect(used(w).every((bytes) => bytes > 0)).toBe(true);
    act.free();
    expect(used(w)).toEqual([0, 0]);
  });

  it('leaves no buffers behind in earlier groups when a later group does not fit', () => {
    const w = weights(64, 1); // the second memory cannot grow past one page
    expect(() => new Activations(w, config, 256)).toThrow(/out of kernel memory/);
    expect(used(w)).toEqual([0, 0]);
  });
});
