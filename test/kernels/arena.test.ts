import { describe, expect, it } from 'vitest';
import { LimitError } from '../../src/errors.js';
import { Arena } from '../../src/kernels/arena.js';

describe('Arena', () => {
  it('grows its memory, reuses freed blocks, and refuses to grow past the maximum with a typed error', () => {
    const arena = new Arena(new WebAssembly.Memory({ initial: 1, maximum: 4 }), 1024);
    const a = arena.alloc(100_000);
    expect(arena.memory.buffer.byteLength).toBe(2 * 65536);
    arena.free(a);
    expect(arena.alloc(50_000)).toBeLessThanOrEqual(a); // the freed block (merged with the gap before it) is reused
    expect(arena.memory.buffer.byteLength).toBe(2 * 65536);
    expect(() => arena.alloc(300_000)).toThrow(LimitError);
    expect(() => arena.alloc(300_000)).toThrow(/out of kernel memory: .*plan the context up front/);
  });

  it('starts large blocks on a 4 KiB boundary and hands the skipped bytes to later small blocks', () => {
    const arena = new Arena(new WebAssembly.Memory({ initial: 1, maximum: 64 }), 1000);
    const small = arena.alloc(100);
    const large = arena.alloc(70_000);
    expect(small % 64).toBe(0);
    expect(large % 4096).toBe(0);
    expect(large).toBeGreaterThan(small + 100);
    const gapFill = arena.alloc(2000); // fits between the small block and the large one
    expect(gapFill).toBeGreaterThanOrEqual(small + 128);
    expect(gapFill + 2000).toBeLessThanOrEqual(large);
    arena.free(large);
    const again = arena.alloc(66_000); // from the freed block, still page-aligned
    expect(again).toBe(large);
    expect(arena.used).toBe(128 + Math.ceil(66_000 / 64) * 64 + 2048);
  });

  it('merges freed neighbours, so sessions of ever different sizes do not grow the memory (issue 22)', () => {
    const arena = new Arena(new WebAssembly.Memory({ initial: 1, maximum: 65536 }), 1024);
    const live: number[] = [];
    // like the server: a few sessions at a time, each a handful of blocks of a size no earlier one had
    for (let i = 0; i < 3000; i++) {
      const size = 1000 + ((i * 7919) % 200_000);
      live.push(arena.alloc(size), arena.alloc(size / 3), arena.alloc(64));
      if (live.length > 12) for (const p of live.splice(0, 3)) arena.free(p);
    }
    // 4 sessions × 3 blocks of at most ~270 KB, with alignment: a few MiB at most, whatever the history
    expect(arena.memory.buffer.byteLength).toBeLessThan(8 * 2 ** 20);
    for (const p of live.splice(0)) arena.free(p);
    expect(arena.used).toBe(0);
    // everything merged back into the top: one allocation of all the memory there was fits without growing
    const before = arena.memory.buffer.byteLength;
    arena.alloc(before - 8192);
    expect(arena.memory.buffer.byteLength).toBe(before);
  });

  it('hands out zeroed bytes when it reuses memory given back to the top', () => {
    const arena = new Arena(new WebAssembly.Memory({ initial: 1, maximum: 4 }), 1024);
    const a = arena.alloc(1000);
    arena.u8(a, 1000).fill(7);
    arena.free(a);
    const b = arena.alloc(1000);
    expect(b).toBe(a);
    expect(arena.u8(b, 1000).every((x) => x === 0)).toBe(true);
  });
});
