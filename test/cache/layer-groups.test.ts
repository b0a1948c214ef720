import { describe, expect, it } from 'vitest';
import type { Codec, CodecAttention } from '../../src/cache/codec.js';
import { GroupedCodec, LayerGroups } from '../../src/cache/layer-groups.js';
import type { Kernels } from '../../src/kernels/api.js';

const memory = (name: string) => ({ name }) as unknown as Kernels;

describe('LayerGroups', () => {
  const [a, b] = [memory('a'), memory('b')];
  const groups = LayerGroups.fill([a, b], 4, 6);

  it('puts perMemory layers in each memory in turn and finds each layer\'s group', () => {
    expect(groups.list.map((g) => [g.from, g.to])).toEqual([[0, 4], [4, 6]]);
    expect(groups.count).toBe(2);
    expect(groups.numLayers).toBe(6);
    expect(groups.first.kernels).toBe(a);
    expect([0, 1, 2, 3, 4, 5].map((l) => groups.indexOf(l))).toEqual([0, 0, 0, 0, 1, 1]);
    expect([0, 3, 4, 5].map((l) => groups.of(l).kernels)).toEqual([a, a, b, b]);
    expect(groups.split(['l0', 'l1', 'l2', 'l3', 'l4', 'l5'])).toEqual([['l0', 'l1', 'l2', 'l3'], ['l4', 'l5']]);
    expect(groups.largestShare()).toBe(4 / 6);
  });

  it('places the same layers in another memory and keeps what a map adds', () => {
    const scratch = memory('scratch');
    const placed = groups.placedIn(scratch);
    expect(placed.list).toEqual([{ kernels: scratch, from: 0, to: 4 }, { kernels: scratch, from: 4, to: 6 }]);
    expect(placed.indexOf(4)).toBe(1);
    const named = groups.map((g, i) => ({ ...g, name: `group ${i}` }));
    expect(named.of(5).name).toBe('group 1');
  });

  it('refuses groups that leave a gap, overlap, are empty or do not start at layer 0, and layers outside them', () => {
    for (const list of [
      [{ kernels: a, from: 0, to: 2 }, { kernels: b, from: 3, to: 6 }],
      [{ kernels: a, from: 0, to: 4 }, { kernels: b, from: 2, to: 6 }],
      [{ kernels: a, from: 0, to: 0 }],
      [{ kernels: a, from: 1, to: 6 }],
      [],
    ]) expect(() => new LayerGroups(list), JSON.stringify(list.map((g) => [g.from, g.to]))).toThrow(RangeError);
    expect(() => groups.indexOf(6)).toThrow(/layer 6 is in no layer group/);
    expect(() => groups.indexOf(-1)).toThrow(/layer -1 is in no layer group/);
  });
});

describe('GroupedCodec', () => {
  /** A codec that records the layers it is asked about and counts bytes as 10 per held token. */
  function recorder(calls: string[], name: string): Codec {
    return {
      readsPositions: false,
      resize: (capacity, keep) => void calls.push(`${name}.resize(${capacity}, [${keep.join()}])`),
      write: (layer) => void calls.push(`${name}.write(${layer})`),
      move: (layer, head, from, to) => void calls.push(`${name}.move(${layer}, ${head}, ${from}, ${to})`),
      attention: (layer) => void calls.push(`${name}.attention(${layer})`),
      readRow: (layer) => (calls.push(`${name}.readRow(${layer})`), new Float32Array(0)),
      bytes: (lengths) => lengths.reduce((sum, n) => sum + 10 * n, 0),
      bitsPerValue: () => 16,
      free: () => void calls.push(`${name}.free`),
    };
  }

  it('sends each layer to its group\'s codec, renumbered inside the group, and sums the groups\' bytes', () => {
    const calls: string[] = [];
    const codec = new GroupedCodec(LayerGroups.fill([memory('a'), memory('b')], 4, 6), [recorder(calls, 'a'), recorder(calls, 'b')]);
    codec.write(3, 0, 1, 0, 0, 0);
    codec.write(4, 0, 1, 0, 0, 0);
    codec.attention(5, {} as CodecAttention);
    codec.move(4, 1, 7, 2);
    codec.readRow(0, 0, 0, 'key');
    codec.resize(32, [1, 2, 3, 4, 5, 6]);
    codec.free();
    expect(calls).toEqual([
      'a.write(3)', 'b.write(0)', 'b.attention(1)', 'b.move(0, 1, 7, 2)', 'a.readRow(0)',
      'a.resize(32, [1,2,3,4])', 'b.resize(32, [5,6])', 'a.free', 'b.free',
    ]);
    expect(codec.bytes([1, 2, 3, 4, 5, 6])).toBe(210);
    expect(codec.maxBytes([1, 0, 0, 0, 0, 2])).toBe(30);
  });
});
