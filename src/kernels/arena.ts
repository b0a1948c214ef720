import { LimitError } from '../errors.js';

const PAGE = 65536;
const ALIGN = 64;
/** Large blocks (weights, caches, scratch) start on a 4 KiB boundary: matvec speed depends on a row's
 *  offset within its page (f16 decode measured 10–15% slower at some 64-byte offsets than at 0). */
const LARGE = 65536;
const LARGE_ALIGN = 4096;

/**
 * Allocator over one WebAssembly.Memory (shared with worker threads when threaded).
 * Allocations are 64-byte aligned and zeroed; freed blocks go to a free list where neighbours merge
 * (and a block ending at the top lowers it), so that sessions of every size can come and go without
 * growing the memory forever: a WebAssembly memory never shrinks.
 */
export class Arena {
  private top: number;
  /** The highest top so far: memory above it has never been handed out, so it is still zero. */
  private dirty: number;
  private readonly sizes = new Map<number, number>();
  /** Free blocks by start (→ size) and by end (→ start); no two of them touch. */
  private readonly freeByStart = new Map<number, number>();
  private readonly freeByEnd = new Map<number, number>();

  constructor(readonly memory: WebAssembly.Memory, heapBase: number) {
    this.top = align(heapBase);
    this.dirty = this.top;
  }

  alloc(bytes: number): number {
    const size = align(Math.max(bytes, 1));
    if (!Number.isSafeInteger(size)) throw new LimitError(`out of kernel memory: cannot allocate ${bytes} bytes`);
    const boundary = size >= LARGE ? LARGE_ALIGN : ALIGN;
    // best fit: the smallest free block that holds the aligned size leaves the large ones whole
    let best: number | undefined;
    for (const [start, length] of this.freeByStart) {
      if (align(start, boundary) + size <= start + length && (best === undefined || length < this.freeByStart.get(best)!)) best = start;
    }
    let ptr: number;
    if (best !== undefined) {
      const end = best + this.freeByStart.get(best)!;
      this.unlink(best);
      ptr = align(best, boundary);
      this.release(best, ptr - best);
      this.release(ptr + size, end - ptr - size);
      new Uint8Array(this.memory.buffer, ptr, size).fill(0);
    } else {
      ptr = align(this.top, boundary);
      const needed = Math.ceil((ptr + size) / PAGE) - this.memory.buffer.byteLength / PAGE;
      if (needed > 0) {
        try {
          this.memory.grow(needed);
        } catch {
          // top is left where it was: a request too big for memory must not fail every later one
          throw new LimitError(
            `out of kernel memory: cannot grow one WebAssembly memory to ${formatMiB(ptr + size)} (at most 4 GiB, or what the machine gives); ` +
              'plan the context up front (loadModel and session options `context`, kvpack info --ctx) so the model is split over more memories',
          );
        }
      }
      const below = this.top;
      this.top = ptr + size;
      this.release(below, ptr - below);
      // bytes below the old high-water mark were handed out before and given back to the top
      if (ptr < this.dirty) new Uint8Array(this.memory.buffer, ptr, Math.min(size, this.dirty - ptr)).fill(0);
      this.dirty = Math.max(this.dirty, this.top);
    }
    this.sizes.set(ptr, size);
    return ptr;
  }

  free(ptr: number): void {
    const size = this.sizes.get(ptr);
    if (size === undefined) return;
    this.sizes.delete(ptr);
    this.release(ptr, size);
  }

  /** Returns [ptr, ptr + bytes) to the free list, merged with the free blocks it touches; nothing for an empty range. */
  private release(ptr: number, bytes: number): void {
    if (bytes <= 0) return;
    let start = ptr;
    let end = ptr + bytes;
    const before = this.freeByEnd.get(start);
    if (before !== undefined) {
      this.unlink(before);
      start = before;
    }
    const after = this.freeByStart.get(end);
    if (after !== undefined) {
      end += after;
      this.unlink(end - after);
    }
    if (end === this.top) {
      this.top = start;
      return;
    }
    this.freeByStart.set(start, end - start);
    this.freeByEnd.set(end, start);
  }

  private unlink(start: number): void {
    this.freeByEnd.delete(start + this.freeByStart.get(start)!);
    this.freeByStart.delete(start);
  }

  /** Bytes currently handed out. */
  get used(): number {
    let n = 0;
    for (const s of this.sizes.values()) n += s;
    return n;
  }

  f32(ptr: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, length);
  }
  i32(ptr: number, length: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr, length);
  }
  u16(ptr: number, length: number): Uint16Array {
    return new Uint16Array(this.memory.buffer, ptr, length);
  }
  u8(ptr: number, length: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, length);
  }
}

function formatMiB(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(0)} MiB`;
}

function align(n: number, boundary = ALIGN): number {
  return Math.ceil(n / boundary) * boundary;
}
