import { readFile } from 'node:fs/promises';
import type { RopeLayout } from '../model/config.js';
import type { DType } from '../model/tensor.js';
import type { AttentionArgs, Kernels, Matrix } from './api.js';
import { Arena } from './arena.js';
import { BLOCK_FORMATS, isBlockDType } from './ggml/index.js';
import { ARGS, CONTROL_BYTES, NEXT, NTHREADS, OP, Pool } from './pool.js';
import { OP_QUANT_ATTENTION, QUANT_TILE, STREAM_DESC_BYTES, writeStreamDesc } from './quant/args.js';
import { rowCodeBytes } from './quant/pack.js';
import type { QuantAttentionArgs } from './quant/types.js';

/** Exports of build/kernels.wasm (assembly/index.ts). Pointers are byte offsets. */
interface KernelExports {
  heapBase(): number;
  run(ctrl: number, thread: number): number;
  /** Quantized attention jobs (assembly/quant.ts). */
  qrun(ctrl: number, thread: number): number;
  siluMul(out: number, gate: number, up: number, len: number): void;
  add(out: number, x: number, len: number): void;
  addBias(x: number, bias: number, n: number, dim: number): void;
  rmsnorm(out: number, x: number, weight: number, n: number, dim: number, eps: number): void;
  rope(x: number, n: number, heads: number, headDim: number, table: number, interleaved: number): void;
  softmax(x: number, len: number): void;
  embed(out: number, table: number, dtype: number, cols: number, ids: number, n: number): void;
  toF16(out: number, x: number, len: number): void;
}

/**
 * How a GGML block row meets the activations in a matvec: `f32` widens the codes in registers and
 * multiplies f32 activations; `int8` quantizes the activations to 8 bits per 32 first (as llama.cpp
 * does) and takes integer dot products. docs/gguf.md measures both.
 */
export type BlockDot = 'f32' | 'int8';

/** dtype codes of assembly/index.ts and assembly/ggml.ts. */
const DTYPE_CODE: Record<DType, number> = {
  f32: 0, f16: 1, bf16: 2, q8_0: 3,
  q4_0: 4, q4_1: 5, q5_0: 6, q5_1: 7, q2_k: 8, q3_k: 9, q4_k: 10, q5_k: 11, q6_k: 12, iq4_nl: 13, iq4_xs: 14,
};
/** Added to a block dtype code for dot products on 8-bit activations (assembly/ggml.ts DT_INT_DOT). */
const DT_INT_DOT = 64;
/** Scratch one decoded block takes (assembly/ggml.ts BLOCK_SCRATCH), rounded up. */
const BLOCK_SCRATCH = 384;
const OP_MATMUL = 1;
const OP_ATTENTION = 2;
const MAX_PAGES = 65536; // 4 GiB
/** Below this many multiply-adds a job runs on the calling thread only (waking workers costs µs). */
const MIN_PARALLEL_MACS = 1 << 16;
/** Slots per converted key/value block in the attention kernel (BLOCK in assembly/index.ts). */
const ATTN_BLOCK = 64;

let compiled: Promise<WebAssembly.Module> | undefined;

function loadModule(): Promise<WebAssembly.Module> {
  // build/ sits two levels above both src/kernels (vitest) and dist/kernels (compiled).
  compiled ??= readFile(new URL('../../build/kernels.wasm', import.meta.url)).then(
    (bytes) => WebAssembly.compile(bytes),
    (e: unknown) => {
      compiled = undefined;
      throw new Error(`cannot read build/kernels.wasm (run \`npm run build:kernels\`): ${String(e)}`);
    },
  );
  return compiled;
}

export async function createWasmKernels(threads: number, blockDot?: BlockDot): Promise<Kernels> {
  const count = Math.max(1, Math.floor(threads));
  const module = await loadModule();
  const memory = new WebAssembly.Memory({ initial: 16, maximum: MAX_PAGES, shared: true });
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const exports = instance.exports as unknown as KernelExports;
  const arena = new Arena(memory, exports.heapBase());
  const ctrl = arena.alloc(CONTROL_BYTES);
  const pool = count > 1 ? await Pool.start(module, memory, ctrl, count - 1) : undefined;
  return new WasmKernels(arena, exports, ctrl, count, pool, blockDot ?? 'int8', blockDot);
}

class WasmKernels implements Kernels {
  readonly backend = 'wasm' as const;
  private scratch = 0;
  private scratchStride = 0;
  private ropeTable = 0;
  private ropeTableBytes = 0;
  private ropeKey: { positions: Int32Array; theta: number; headDim: number } | undefined;

  constructor(
    readonly arena: Arena,
    private readonly x: KernelExports,
    private readonly ctrl: number,
    readonly threads: number,
    private readonly pool: Pool | undefined,
    private readonly blockDot: BlockDot,
    private readonly blockDotAsked: BlockDot | undefined,
  ) {}

  matmul(out: number, x: number, w: Matrix, n: number): void {
    const { rows, cols } = w;
    if (n <= 0 || rows <= 0) return;
    checkBlockCols(w);
    const par = this.parallelism(n * rows * cols);
    // Rows per work item: several items per thread for balance; for n > 1 also bounded so the chunk's
    // dequantised rows (this thread's scratch) stay around 256 KiB, i.e. in L2.
    const balance = ceil4(rows / (par * 8));
    let chunk = Math.max(4, Math.min(64, balance));
    // n = 1, f16: x · 2^112 for the multiply-free widening (assembly/index.ts prescaleX)
    let scratchBytes = n === 1 && w.dtype === 'f16' ? cols * 4 : 0;
    // q8_0 keeps its own f32 kernel unless the integer way is asked for explicitly
    const blocks = isBlockDType(w.dtype) && (w.dtype !== 'q8_0' || this.blockDotAsked === 'int8');
    // n = 1, block types: the prepared activations (sums per 16, 8-bit codes and scales per 32), then one decoded block
    if (n === 1 && blocks) scratchBytes = Math.ceil((cols / 16 * 4 + cols / 32 * 4 + cols * 2) / 16) * 16 + BLOCK_SCRATCH;
    if (n > 1) {
      chunk = Math.max(4, Math.min(chunk, floor4(262144 / (cols * 4))));
      if (w.dtype !== 'f32') scratchBytes = chunk * cols * 4 + BLOCK_SCRATCH;
    }
    this.ensureScratch(scratchBytes);
    const dtype = DTYPE_CODE[w.dtype] + (n === 1 && blocks && this.blockDot === 'int8' ? DT_INT_DOT : 0);
    this.job(OP_MATMUL, par, [out, x, w.ptr, dtype, rows, cols, n, chunk, this.scratch, this.scratchStride]);
  }

  /**
   * What both attention kernels share: argument checks, threads, and query heads per work item — as
   * many of a KV group as possible (keys/values converted or decoded once for all of them), split
   * further only when there would be fewer than `itemsPerThread` items per thread.
   */
  private attentionPlan(a: AttentionArgs | QuantAttentionArgs, itemsPerThread: number): { group: number; seen: number; par: number; hg: number } {
    const { n, numHeads, numKvHeads, headDim: d } = a;
    if (numKvHeads <= 0 || numHeads % numKvHeads !== 0) {
      throw new RangeError(`numHeads ${numHeads} is not a multiple of numKvHeads ${numKvHeads}`);
    }
    if (a.visible + n - 1 > a.capacity) throw new RangeError(`attention over ${a.visible + n - 1} slots exceeds capacity ${a.capacity}`);
    const group = numHeads / numKvHeads;
    const seen = a.visible + n;
    const par = this.parallelism(n * numHeads * seen * d);
    const perHead = a.received ? 1 : n;
    const minItems = par > 1 ? itemsPerThread * par : 1;
    let hg = group;
    while (hg > 1 && perHead * numKvHeads * Math.ceil(group / hg) < minItems) hg = Math.ceil(hg / 2);
    return { group, seen, par, hg };
  }

  attention(a: AttentionArgs): void {
    const { n, numHeads, numKvHeads, headDim: d } = a;
    if (n <= 0) return;
    const { seen, par, hg } = this.attentionPlan(a, 4);
    const scratch = 4 * (hg * ceil4(seen) + ATTN_BLOCK * d + hg * d + hg) + 64;
    this.ensureScratch(scratch);
    const args = [
      a.out, a.q, n, a.keys, a.values, a.dtype === 'f16' ? 1 : 0, a.capacity, a.visible, a.mask ?? 0,
      numHeads, numKvHeads, d, 0 /* scale, written as f32 below */, a.lastProbs, a.received, hg,
      this.scratch, this.scratchStride,
    ];
    this.job(OP_ATTENTION, par, args, (f) => (f[ARGS / 4 + 12] = a.scale));
  }

  private qdesc = 0;

  quantAttention(a: QuantAttentionArgs): void {
    const { n, numHeads, numKvHeads, headDim: d } = a;
    if (n <= 0) return;
    // one item per thread will do: decoding a tile costs more than scoring it, so an uneven spread of
    // whole KV groups beats decoding a group twice
    const { group, seen, par, hg } = this.attentionPlan(a, 1);
    this.ensureScratch(4 * (hg * ceil4(seen) + QUANT_TILE * d + 64 + hg * d + hg + 4 + 2 * d) + 64);
    if (!this.qdesc) this.qdesc = this.arena.alloc(2 * STREAM_DESC_BYTES);
    const desc = this.arena.i32(this.qdesc, (2 * STREAM_DESC_BYTES) / 4);
    writeStreamDesc(desc, 0, a.keys, rowCodeBytes(d, a.keys.bits));
    writeStreamDesc(desc, STREAM_DESC_BYTES / 4, a.values, rowCodeBytes(d, a.values.bits));
    // One query with nothing to report per slot (decode): split the slots too, so every thread gets
    // an even share without decoding any tile twice; partial softmax sums are merged below.
    const groupsPerHead = Math.ceil(group / hg);
    let splits = 1;
    if (n === 1 && !a.lastProbs && !a.received && par > 1) {
      splits = Math.min(Math.ceil(a.visible / QUANT_TILE), Math.ceil((2 * par) / (numKvHeads * groupsPerHead)));
    }
    const partialFloats = numKvHeads * groupsPerHead * splits * hg * (d + 2);
    if (splits > 1 && partialFloats * 4 > this.qpartialBytes) {
      if (this.qpartial) this.arena.free(this.qpartial);
      this.qpartialBytes = partialFloats * 8;
      this.qpartial = this.arena.alloc(this.qpartialBytes);
    }
    const args = [
      a.out, a.q, n, a.visible, a.capacity, numHeads, numKvHeads, d, 0 /* scale, f32 below */, a.lastProbs, a.received,
      this.scratch, this.scratchStride, a.positions, this.qdesc, this.qdesc + STREAM_DESC_BYTES, a.ropeLo, a.ropeHi,
      a.ropeInterleaved ? 1 : 0, hg, splits, splits > 1 ? this.qpartial : 0,
    ];
    this.job(OP_QUANT_ATTENTION, par, args, (f) => (f[ARGS / 4 + 8] = a.scale));
    if (splits > 1) this.mergeQuantParts(a.out, numKvHeads, group, hg, splits, d);
  }

  private qpartial = 0;
  private qpartialBytes = 0;

  /** out[h] = Σ_p e^(m_p − M)·acc_p / Σ_p e^(m_p − M)·l_p over the slot ranges of a split decode job. */
  private mergeQuantParts(out: number, numKv: number, group: number, hg: number, splits: number, d: number): void {
    const subs = Math.ceil(group / hg);
    const parts = this.arena.f32(this.qpartial, numKv * subs * splits * hg * (d + 2));
    const o = this.arena.f32(out, numKv * group * d);
    const acc = new Float64Array(d);
    for (let kvh = 0; kvh < numKv; kvh++) {
      for (let sub = 0; sub < subs; sub++) {
        const h0 = kvh * group + sub * hg;
        for (let j = 0; j < Math.min(hg, (kvh + 1) * group - h0); j++) {
          const at = (p: number): number => (((kvh * subs + sub) * splits + p) * hg + j) * (d + 2);
          let m = -Infinity;
          for (let p = 0; p < splits; p++) m = Math.max(m, parts[at(p)]!);
          let l = 0;
          acc.fill(0);
          for (let p = 0; p < splits; p++) {
            const base = at(p);
            if (parts[base] === -Infinity) continue;
            const w = Math.exp(parts[base]! - m);
            l += w * parts[base + 1]!;
            for (let i = 0; i < d; i++) acc[i] = acc[i]! + w * parts[base + 2 + i]!;
          }
          const inv = l > 0 ? 1 / l : 0;
          for (let i = 0; i < d; i++) o[(h0 + j) * d + i] = acc[i]! * inv;
        }
      }
    }
  }

  rmsnorm(out: number, x: number, weight: number, n: number, dim: number, eps: number): void {
    this.x.rmsnorm(out, x, weight, n, dim, eps);
  }

  rope(x: number, n: number, heads: number, headDim: number, positions: number, theta: number, layout: RopeLayout): void {
    if (n <= 0) return;
    const half = headDim >> 1;
    const pos = this.arena.i32(positions, n);
    const key = this.ropeKey;
    // q and k are rotated with the same positions back to back: reuse the cos/sin table then.
    const same = key !== undefined && key.theta === theta && key.headDim === headDim && key.positions.length === n && key.positions.every((p, i) => p === pos[i]);
    if (!same) {
      const bytes = n * half * 16;
      if (bytes > this.ropeTableBytes) {
        if (this.ropeTable) this.arena.free(this.ropeTable);
        this.ropeTableBytes = Math.max(bytes, this.ropeTableBytes * 2);
        this.ropeTable = this.arena.alloc(this.ropeTableBytes);
      }
      const table = new Float64Array(this.arena.memory.buffer, this.ropeTable, n * half * 2);
      // The reference's exact expression, so angles (and cos/sin) are bit-identical.
      for (let t = 0; t < n; t++) {
        for (let i = 0; i < half; i++) {
          const angle = pos[t]! * theta ** ((-2 * i) / headDim);
          table[(t * half + i) * 2] = Math.cos(angle);
          table[(t * half + i) * 2 + 1] = Math.sin(angle);
        }
      }
      this.ropeKey = { positions: pos.slice(), theta, headDim };
    }
    this.x.rope(x, n, heads, headDim, this.ropeTable, layout === 'interleaved' ? 1 : 0);
  }

  softmax(x: number, len: number): void {
    this.x.softmax(x, len);
  }

  siluMul(out: number, gate: number, up: number, len: number): void {
    this.x.siluMul(out, gate, up, len);
  }

  add(out: number, x: number, len: number): void {
    this.x.add(out, x, len);
  }

  addBias(x: number, bias: number, n: number, dim: number): void {
    this.x.addBias(x, bias, n, dim);
  }

  embed(out: number, table: Matrix, ids: number, n: number): void {
    checkBlockCols(table);
    const id = this.arena.i32(ids, n);
    for (let t = 0; t < n; t++) {
      if (!(id[t]! >= 0 && id[t]! < table.rows)) throw new RangeError(`token id ${id[t]} out of range [0, ${table.rows})`);
    }
    this.x.embed(out, table.ptr, DTYPE_CODE[table.dtype], table.cols, ids, n);
  }

  toF16(out: number, x: number, len: number): void {
    this.x.toF16(out, x, len);
  }

  async close(): Promise<void> {
    await this.pool?.close();
  }

  /** Threads to use for a job of `macs` multiply-adds. */
  private parallelism(macs: number): number {
    return this.pool && macs >= MIN_PARALLEL_MACS ? this.threads : 1;
  }

  /** Makes sure every thread has `bytes` of scratch (re-allocated larger, never shrunk). */
  private ensureScratch(bytes: number): void {
    if (bytes <= this.scratchStride) return;
    if (this.scratch) this.arena.free(this.scratch);
    this.scratchStride = Math.ceil((Math.max(bytes, this.scratchStride * 1.5) + 63) / 64) * 64;
    this.scratch = this.arena.alloc(this.scratchStride * this.threads);
  }

  /** Writes a job into the control block and runs it on `par` threads (the caller included). */
  private job(op: number, par: number, args: number[], patch?: (f: Float32Array) => void): void {
    const write = (): void => {
      const buf = this.arena.memory.buffer;
      const i32 = new Int32Array(buf, this.ctrl, CONTROL_BYTES / 4);
      i32.set(args, ARGS / 4);
      if (patch) patch(new Float32Array(buf, this.ctrl, CONTROL_BYTES / 4));
      Atomics.store(i32, OP, op);
      Atomics.store(i32, NTHREADS, par);
      Atomics.store(i32, NEXT, 0);
    };
    const self = (): number => (op >= OP_QUANT_ATTENTION ? this.x.qrun : this.x.run)(this.ctrl, 0);
    if (this.pool) {
      this.pool.run(write, self, par > 1);
    } else {
      write();
      self();
    }
  }
}

/** A block-type matrix's rows must be whole blocks. */
function checkBlockCols(w: Matrix): void {
  if (isBlockDType(w.dtype) && w.cols % BLOCK_FORMATS[w.dtype].blockValues !== 0) {
    throw new RangeError(`${w.dtype} matrix cols ${w.cols} is not a multiple of ${BLOCK_FORMATS[w.dtype].blockValues}`);
  }
}

function ceil4(v: number): number {
  return Math.ceil(v / 4) * 4;
}
function floor4(v: number): number {
  return Math.floor(v / 4) * 4;
}
