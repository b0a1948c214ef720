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
});
