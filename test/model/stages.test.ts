import { describe, expect, it } from 'vitest';
import type { Kernels } from '../../src/kernels/api.js';
import { Arena } from '../../src/kernels/arena.js';
import { allocStages, freeStages } from '../../src/model/forward.js';
import type { ModelConfig } from '../../src/model/config.js';
import type { WeightGroup } from '../../src/model/weights.js';

const config = { hiddenSize: 64, intermediateSize: 128, numHeads: 4, numKvHeads: 2, headDim: 16, vocabSize: 256 } as ModelConfig;

function group(pages: number, from: number): WeightGroup {
  const arena = new Arena(new WebAssembly.Memory({ initial: 1, maximum: pages }), 1024);
  return { kernels: { arena } as Kernels, from, layers: [] } as unknown as WeightGroup;
}

describe('allocStages', () => {
  it('gives each layer group its activation buffers and frees them all', () => {
    const groups = [group(64, 0), group(64, 2)];
    const stages = allocStages(groups, config, 8);
    expect(stages.map((s) => s.from)).toEqual([0, 2]);
    expect(groups.every((g) => g.kernels.arena.used > 0)).toBe(true);
    freeStages(stages);
    expect(groups.map((g) => g.kernels.arena.used)).toEqual([0, 0]);
  });

  it('leaves no buffers behind in earlier groups when a later group does not fit', () => {
    const groups = [group(64, 0), group(1, 2)]; // the second memory cannot grow past one page
    expect(() => allocStages(groups, config, 256)).toThrow(/out of kernel memory/);
    expect(groups.map((g) => g.kernels.arena.used)).toEqual([0, 0]);
  });
});
