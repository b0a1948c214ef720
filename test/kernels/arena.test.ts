import { describe, expect, it } from 'vitest';
import { LimitError } from '../../src/errors.js';
import { Arena } from '../../src/kernels/arena.js';

describe('Arena', () => {
  it('grows its memory, reuses freed blocks, and refuses to grow past the maximum with a typed error', () => {
    const arena = new Arena(new WebAssembly.Memory({ initial: 1, maximum: 4 }), 1024);
    const a = arena.alloc(100_000);
    expect(arena.memory.buffer.byteLength).toBe(2 * 65536);
    arena.free(a);
    expect(arena.alloc(50_000)).toBe(a); // first fit
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
});
