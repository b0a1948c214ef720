import { LimitError } from '../errors.js';

const PAGE = 65536;
const ALIGN = 64;
/** Large blocks (weights, caches, scratch) start on a 4 KiB boundary: matvec speed depends on a row's
 *  offset within its page (f16 decode measured 10–15% slower at some 64-byte offsets than at 0). */
const LARGE = 65536;
const LARGE_ALIGN = 4096;

/**
 * Allocator over one WebAssembly.Memory (shared with worker threads when threaded).
 * Allocations are 64-byte aligned and zeroed; freed blocks go to a first-fit free list so that
 * sessions can come and go without growing the memory forever.
 */
export class Arena {
  private top: number;
  private readonly sizes = new Map<number, number>();
  private readonly freeBlocks: { ptr: number; size: number }[] = [];

  constructor(readonly memory: WebAssembly.Memory, heapBase: number) {
    this.top = align(heapBase);
  }

  alloc(bytes: number): number {
    const size = align(Math.max(bytes, 1));
    if (!Number.isSafeInteger(size)) throw new LimitError(`out of kernel memory: cannot allocate ${bytes} bytes`);
    const boundary = size >= LARGE ? LARGE_ALIGN : ALIGN;
    const i = this.freeBlocks.findIndex((b) => align(b.ptr, boundary) + size <= b.ptr + b.size);
    let ptr: number;
    if (i >= 0) {
      const block = this.freeBlocks[i]!;
      ptr = align(block.ptr, boundary);
      this.freeBlocks.splice(i, 1);
      this.release(block.ptr, ptr - block.ptr);
      this.release(ptr + size, block.ptr + block.size - ptr - size);
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
      this.release(this.top, ptr - this.top);
      this.top = ptr + size;
    }
    this.sizes.set(ptr, size);
    return ptr;
  }

  free(ptr: number): void {
    const size = this.sizes.get(ptr);
    if (size === undefined) return;
    this.sizes.delete(ptr);
    this.freeBlocks.push({ ptr, size });
  }

  /** Returns [ptr, ptr + bytes) to the free list (nothing for an empty range). */
  private release(ptr: number, bytes: number): void {
    if (bytes > 0) this.freeBlocks.push({ ptr, size: bytes });
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
