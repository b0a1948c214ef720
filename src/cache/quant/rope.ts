import type { Kernels } from '../../kernels/api.js';
import type { Rope } from '../../kernels/rope.js';

/**
 * cos/sin tables for RoPE applied inside the quantized attention kernel (keys stored before RoPE):
 * lo holds angles (p mod 64)·θ_j, hi angles (p − p mod 64)·θ_j, θ_j from the model's Rope; the kernel
 * composes cos/sin of pθ_j by the angle-sum identities. Both stay small (hi is 256 B per 64 positions
 * for a 64-wide head), so they live in cache instead of a per-position table as large as the keys.
 */
export class RopeTables {
  readonly lo: number;
  hi = 0;
  private hiRows = 0;
  private readonly half: number;

  constructor(private readonly k: Kernels, private readonly rope: Rope) {
    this.half = rope.headDim >> 1;
    this.lo = k.arena.alloc(64 * 2 * this.half * 4);
    this.fill(this.lo, 0, 64, 1);
  }

  /** Makes sure positions < maxPos are covered. */
  ensure(maxPos: number): void {
    const rows = Math.ceil((maxPos + 1) / 64);
    if (rows <= this.hiRows) return;
    const next = Math.max(rows, this.hiRows * 2, 64);
    if (this.hi) this.k.arena.free(this.hi);
    this.hi = this.k.arena.alloc(next * 2 * this.half * 4);
    this.fill(this.hi, 0, next, 64);
    this.hiRows = next;
  }

  private fill(ptr: number, from: number, rows: number, step: number): void {
    const t = this.k.arena.f32(ptr, rows * 2 * this.half);
    for (let r = from; r < rows; r++) {
      for (let j = 0; j < this.half; j++) {
        const angle = this.rope.angle(r * step, j);
        t[(2 * r) * this.half + j] = Math.cos(angle);
        t[(2 * r + 1) * this.half + j] = Math.sin(angle);
      }
    }
  }

  bytes(): number {
    return (64 + this.hiRows) * 2 * this.half * 4;
  }

  /** The most bytes() can reach while positions stay below maxPos (ensure may double past what is needed). */
  maxBytes(maxPos: number): number {
    return (64 + Math.max(this.hiRows, 64, 2 * Math.ceil(maxPos / 64))) * 2 * this.half * 4;
  }

  free(): void {
    this.k.arena.free(this.lo);
    if (this.hi) this.k.arena.free(this.hi);
  }
}
