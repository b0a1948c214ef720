import { readFile } from 'node:fs/promises';
import v8 from 'node:v8';
import {
  ARGS, ATT_BLOCK, ATT_CAPACITY, ATT_F16, ATT_HEAD_DIM, ATT_HEAD_GROUP, ATT_KEYS, ATT_LAST_PROBS, ATT_MASK, ATT_N,
  ATT_NUM_HEADS, ATT_NUM_KV_HEADS, ATT_OUT, ATT_PARTIAL, ATT_Q, ATT_QUERY_BLOCK, ATT_SPLITS, ATT_RECEIVED, ATT_SCALE, ATT_SCRATCH, ATT_SCRATCH_STRIDE, ATT_VALUES,
  ATT_VISIBLE, CONTROL_BYTES, CTRL_NEXT, CTRL_NTHREADS, CTRL_OP, DT_BF16, DT_F16, DT_F32, DT_INT_DOT, DT_IQ4_NL,
  DT_IQ4_XS, DT_Q2_K, DT_Q3_K, DT_Q4_0, DT_Q4_1, DT_Q4_K, DT_Q5_0, DT_Q5_1, DT_Q5_K, DT_Q6_K, DT_Q8_0, MATMUL_CHUNK,
  MATMUL_COLS, MATMUL_DTYPE, MATMUL_FEW, MATMUL_MAX_PARTS, MATMUL_N, MATMUL_PART, MATMUL_PART_BYTES, MATMUL_PARTS, MATMUL_SCRATCH,
  MATMUL_SCRATCH_STRIDE, MATMUL_X, OP_ATTENTION, OP_MATMUL, OP_QUANT_ATTENTION, OP_QUANTIZE, OP_READ, OP_ROPE_ROWS, READ_BYTES, READ_CHUNK, READ_OUT, READ_SRC, QUANTIZE_CAPACITY, QUANTIZE_FROM, QUANTIZE_HEAD0,
  QUANTIZE_HEAD_DIM, QUANTIZE_HEADS, QUANTIZE_KIND, QUANTIZE_MIDS, QUANTIZE_MIDS_LENGTH, QUANTIZE_N, QUANTIZE_SRC,
  QUANTIZE_STREAM, PART_OUT, PART_ROWS, PART_W, QATT_CAPACITY, QATT_FAST, QATT_HEAD_DIM, QATT_HEAD_GROUP, QATT_KEYS,
  QATT_LAST_PROBS, QATT_MASK, QATT_N, QATT_NUM_HEADS, QATT_NUM_KV_HEADS, QATT_OUT, QATT_PARTIAL, QATT_POSITIONS, QATT_Q,
  QATT_QUERY_BLOCK, QATT_RECEIVED, QATT_ROPE_HI, QATT_ROPE_INTERLEAVED, QATT_ROPE_LO, QATT_SCALE, QATT_SCRATCH, QATT_SCRATCH_STRIDE,
  QATT_SPLITS, QATT_TILE, QATT_VALUES, QATT_VISIBLE, ROPE_CHUNK_ROWS, ROPE_DST, ROPE_F16, ROPE_HEAD_DIM, ROPE_HEADS, ROPE_INTERLEAVED, ROPE_N,
  ROPE_POSITIONS, ROPE_SRC, ROPE_STRIDE, ROPE_TABLE, STREAM_DESC_BYTES,
} from './abi.js';
import type { Kernels } from './api.js';
import { UsageError } from '../errors.js';
import { Arena } from './arena.js';
import { ArgBlock, writeStreamDesc } from './args.js';
import type { DType } from './dtype.js';
import { BLOCK_FORMATS, isBlockDType } from './ggml/index.js';
import { Pool } from './pool.js';
import { rowCodeBytes } from './packed/pack.js';
import type { QuantAttentionArgs, QuantizeArgs } from './packed/types.js';
import { checkPosition, checkReadSize } from './reference.js';
import type { Rope } from './rope.js';
import { attentionScratchBytes, INT_DOT_MAX_TOKENS, matmulScratchBytes, queryBlock, tileRows, type MatmulScratch } from './scratch.js';
import type { AttentionArgs, Matrix, MatmulMode, MatmulPart, SimdBuild, SlotDType } from './types.js';

/** Exports of build/kernels.wasm (assembly/index.ts). Pointers are byte offsets. */
interface KernelExports {
  heapBase(): number;
  /** The one job dispatcher: runs work items of the job in the control block at `ctrl` (abi.ts). */
  run(ctrl: number, thread: number): number;
  siluMul(out: number, gate: number, up: number, len: number): void;
  add(out: number, x: number, len: number): void;
  addBias(x: number, bias: number, n: number, dim: number): void;
  rmsnorm(out: number, x: number, weight: number, n: number, dim: number, eps: number): void;
  rope(x: number, n: number, heads: number, headDim: number, table: number, interleaved: number): void;
  softmax(x: number, len: number): void;
  embed(out: number, table: number, dtype: number, cols: number, ids: number, n: number): void;
  toF16(out: number, x: number, len: number): void;
}

const DTYPE_CODE: Record<DType, number> = {
  f32: DT_F32, f16: DT_F16, bf16: DT_BF16, q8_0: DT_Q8_0, q4_0: DT_Q4_0, q4_1: DT_Q4_1, q5_0: DT_Q5_0, q5_1: DT_Q5_1,
  q2_k: DT_Q2_K, q3_k: DT_Q3_K, q4_k: DT_Q4_K, q5_k: DT_Q5_K, q6_k: DT_Q6_K, iq4_nl: DT_IQ4_NL, iq4_xs: DT_IQ4_XS,
};
const MAX_PAGES = 65536; // 4 GiB
/** Below this many multiply-adds a job runs on the calling thread only (waking workers costs µs). */
const MIN_PARALLEL_MACS = 1 << 16;

/** The files of the two kernel builds (scripts/build-kernels.mjs). */
const BUILD_FILES: Record<SimdBuild, string> = { simd128: 'kernels.wasm', relaxed: 'kernels-relaxed.wasm' };

const compiled = new Map<SimdBuild, Promise<WebAssembly.Module>>();
let relaxedRuns: Promise<boolean> | undefined;

/**
 * Which build to run: KVPACK_SIMD=simd128|relaxed forces one (a forced relaxed build that the engine
 * cannot run is an error), else the relaxed build where it validates. Node < 22 has relaxed SIMD
 * behind a V8 flag, set here before the first compile; it holds for worker threads too.
 */
export async function simdBuild(): Promise<SimdBuild> {
  const forced = process.env.KVPACK_SIMD?.trim() || undefined;
  if (forced !== undefined && forced !== 'simd128' && forced !== 'relaxed') {
    throw new UsageError(`KVPACK_SIMD must be simd128 or relaxed, got "${forced}"`);
  }
  if (forced === 'simd128') return 'simd128';
  relaxedRuns ??= (async () => {
    if (Number(process.versions.node.split('.')[0]) < 22) v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    return WebAssembly.validate(await readBuild('relaxed'));
  })();
  const ok = await relaxedRuns;
  if (!ok && forced) throw new UsageError(`KVPACK_SIMD=relaxed, but this JavaScript engine cannot run relaxed SIMD (Node ${process.versions.node})`);
  return ok ? 'relaxed' : 'simd128';
}

async function readBuild(build: SimdBuild): Promise<Uint8Array<ArrayBuffer>> {
  // build/ sits two levels above both src/kernels (vitest) and dist/kernels (compiled).
  try {
    return new Uint8Array(await readFile(new URL(`../../build/${BUILD_FILES[build]}`, import.meta.url)));
  } catch (e) {
    throw new Error(`cannot read build/${BUILD_FILES[build]} (run \`npm run build:kernels\`): ${String(e)}`);
  }
}

function loadModule(build: SimdBuild): Promise<WebAssembly.Module> {
  let m = compiled.get(build);
  if (!m) {
    m = readBuild(build).then((bytes) => WebAssembly.compile(bytes));
    m.catch(() => compiled.delete(build)); // a later call tries again
    compiled.set(build, m);
  }
  return m;
}

export async function createWasmKernels(threads: number, matmul: MatmulMode = 'fast'): Promise<Kernels> {
  const count = Math.max(1, Math.floor(threads));
  const simd = await simdBuild();
  const module = await loadModule(simd);
  const memory = new WebAssembly.Memory({ initial: 16, maximum: MAX_PAGES, shared: true });
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const exports = instance.exports as unknown as KernelExports;
  const arena = new Arena(memory, exports.heapBase());
  const ctrl = arena.alloc(CONTROL_BYTES);
  const pool = count > 1 ? await Pool.start(module, memory, ctrl, count - 1) : undefined;
  return new WasmKernels(arena, exports, ctrl, count, pool, simd, matmul);
}

class WasmKernels implements Kernels {
  readonly backend = 'wasm' as const;
  private scratch = 0;
  private scratchStride = 0;
  private ropeTable = 0;
  private ropeTableBytes = 0;
  /** What the cos/sin table at ropeTable was built for: a Rope and n positions. */
  private ropeFor: Rope | undefined;
  private ropePositions = new Int32Array(0);
  private ropeN = 0;
  /** ropeRows' cos/sin table: positions [0, ropeRowsCount) of ropeRowsFor, grown as positions grow (never per step). */
  private ropeRowsTable = 0;
  private ropeRowsCount = 0;
  private ropeRowsFor: Rope | undefined;
  /** The control block's words and its job arguments. */
  private readonly words: Int32Array;
  private readonly args: ArgBlock;
  /** Stream descriptors: keys and values for quantized attention, and the store being quantized into. */
  private qdesc = 0;
  private qdescKeys: ArgBlock | undefined;
  private qdescValues: ArgBlock | undefined;
  private qdescQuantize: ArgBlock | undefined;

  constructor(
    readonly arena: Arena,
    private readonly x: KernelExports,
    private readonly ctrl: number,
    readonly threads: number,
    private readonly pool: Pool | undefined,
    /** Which kernel build runs. */
    readonly simd: SimdBuild,
    /** How quantized weights meet the activations (MatmulMode). */
    private readonly mode: MatmulMode,
  ) {
    this.words = arena.i32(ctrl, CONTROL_BYTES / 4);
    this.args = new ArgBlock(arena.memory, ctrl + ARGS, CONTROL_BYTES - ARGS);
  }

  /** One part, reused: a matmul call allocates nothing. */
  private readonly single: [MatmulPart] = [{ out: 0, w: { ptr: 0, dtype: 'f32', rows: 0, cols: 0 } }];

  matmul(out: number, x: number, w: Matrix, n: number): void {
    const part = this.single[0];
    part.out = out;
    part.w = w;
    this.matmuls(x, this.single, n);
  }

  matmuls(x: number, parts: readonly MatmulPart[], n: number): void {
    if (!parts.length) return;
    const { dtype, cols } = parts[0]!.w;
    let rows = 0;
    let alike = parts.length <= MATMUL_MAX_PARTS;
    for (const p of parts) {
      rows += p.w.rows;
      alike &&= p.w.dtype === dtype && p.w.cols === cols;
    }
    if (!alike) {
      for (const p of parts) this.matmul(p.out, x, p.w, n);
      return;
    }
    if (n <= 0 || rows <= 0) return;
    for (const p of parts) checkBlockCols(p.w);
    const par = this.parallelism(n * rows * cols);
    // Rows per work item: several items per thread for balance; for the f32 prefill tiles also bounded
    // so the chunk's dequantised rows (this thread's scratch) stay in L2.
    const balance = ceil4(rows / (par * 8));
    let chunk = Math.max(4, Math.min(64, balance));
    // fast: every block type on integer dot products up to INT_DOT_MAX_TOKENS tokens; exact: q8_0 has
    // its own f32 matvec
    const blocks = isBlockDType(dtype) && (dtype !== 'q8_0' || this.mode === 'fast');
    const intDot = blocks && this.mode === 'fast' && n <= INT_DOT_MAX_TOKENS;
    let how: MatmulScratch = 'none';
    if (n === 1) how = blocks ? 'prepared' : dtype === 'f16' ? 'prescaled' : 'none';
    else if (intDot) how = 'prepared';
    else if (n <= MATMUL_FEW && (dtype === 'f32' || dtype === 'f16' || dtype === 'bf16')) how = 'few';
    else {
      how = 'tiles';
      chunk = Math.min(chunk, tileRows(cols));
    }
    const scratchBytes = matmulScratchBytes(how, n, cols, chunk);
    this.ensureScratch(scratchBytes);
    const b = this.begin();
    b.ptr(MATMUL_X, x);
    b.int(MATMUL_DTYPE, DTYPE_CODE[dtype] + (intDot ? DT_INT_DOT : 0));
    b.int(MATMUL_COLS, cols);
    b.int(MATMUL_N, n);
    b.int(MATMUL_CHUNK, chunk);
    b.ptr(MATMUL_SCRATCH, this.scratch);
    b.int(MATMUL_SCRATCH_STRIDE, this.scratchStride);
    b.int(MATMUL_PARTS, parts.length);
    for (let i = 0; i < parts.length; i++) {
      const at = MATMUL_PART + i * MATMUL_PART_BYTES;
      b.ptr(at + PART_OUT, parts[i]!.out);
      b.ptr(at + PART_W, parts[i]!.w.ptr);
      b.int(at + PART_ROWS, parts[i]!.w.rows);
    }
    this.run(OP_MATMUL, par);
  }

  /**
   * What both attention kernels share: argument checks, threads, and query heads per work item — as
   * many of a KV group as possible (keys/values converted or decoded once for all of them), split
   * further only when there would be fewer than `itemsPerThread` items per thread. One query with
   * nothing to report per slot (decode) keeps whole groups and splits the slots instead (`splits` > 1,
   * ranges of whole `splitBlock`s), so every thread gets an even share without converting any block
   * twice; the partial softmax sums are merged by `mergeSplits`.
   */
  private attentionPlan(a: AttentionArgs | QuantAttentionArgs, itemsPerThread: number, splitBlock: number): { group: number; seen: number; par: number; hg: number; splits: number } {
    const { n, numHeads, numKvHeads, headDim: d } = a;
    if (numKvHeads <= 0 || numHeads % numKvHeads !== 0) {
      throw new RangeError(`numHeads ${numHeads} is not a multiple of numKvHeads ${numKvHeads}`);
    }
    if (a.visible + n - 1 > a.capacity) throw new RangeError(`attention over ${a.visible + n - 1} slots exceeds capacity ${a.capacity}`);
    const group = numHeads / numKvHeads;
    const seen = a.visible + n;
    const par = this.parallelism(n * numHeads * seen * d);
    if (n === 1 && !a.lastProbs && !a.received && par > 1) {
      const splits = Math.min(Math.ceil(a.visible / splitBlock), Math.ceil((2 * par) / numKvHeads));
      if (splits > 1) {
        this.ensurePartial(numKvHeads * splits * group * (d + 2));
        return { group, seen, par, hg: group, splits };
      }
    }
    const perHead = a.received ? 1 : n;
    const minItems = par > 1 ? itemsPerThread * par : 1;
    let hg = group;
    while (hg > 1 && perHead * numKvHeads * Math.ceil(group / hg) < minItems) hg = Math.ceil(hg / 2);
    return { group, seen, par, hg, splits: 1 };
  }

  attention(a: AttentionArgs): void {
    const { n, numHeads, numKvHeads, headDim: d } = a;
    if (n <= 0) return;
    const { group, seen, par, hg, splits } = this.attentionPlan(a, 4, ATT_BLOCK);
    // each item takes a block of queries, so a converted key/value block serves them all (scores of a
    // block kept to about 2 MiB per thread)
    let qb = queryBlock(n, hg, seen);
    // short chunks: smaller blocks rather than fewer items than the threads can share evenly
    const itemsPerBlock = numKvHeads * Math.ceil(numHeads / numKvHeads / hg);
    while (qb > 1 && par > 1 && Math.ceil(n / qb) * itemsPerBlock < 4 * par) qb = Math.ceil(qb / 2);
    const rows = qb * hg;
    this.ensureScratch(attentionScratchBytes('float', rows, seen, d));
    const b = this.begin();
    b.ptr(ATT_OUT, a.out);
    b.ptr(ATT_Q, a.q);
    b.int(ATT_N, n);
    b.ptr(ATT_KEYS, a.keys);
    b.ptr(ATT_VALUES, a.values);
    b.int(ATT_F16, a.dtype === 'f16' ? (a.keyDtype === 'f32' ? 2 : 1) : 0);
    b.int(ATT_CAPACITY, a.capacity);
    b.int(ATT_VISIBLE, a.visible);
    b.ptr(ATT_MASK, a.mask ?? 0);
    b.int(ATT_NUM_HEADS, numHeads);
    b.int(ATT_NUM_KV_HEADS, numKvHeads);
    b.int(ATT_HEAD_DIM, d);
    b.float(ATT_SCALE, a.scale);
    b.ptr(ATT_LAST_PROBS, a.lastProbs);
    b.ptr(ATT_RECEIVED, a.received);
    b.int(ATT_HEAD_GROUP, hg);
    b.int(ATT_QUERY_BLOCK, qb);
    b.ptr(ATT_SCRATCH, this.scratch);
    b.int(ATT_SCRATCH_STRIDE, this.scratchStride);
    b.int(ATT_SPLITS, splits);
    b.ptr(ATT_PARTIAL, splits > 1 ? this.partial : 0);
    this.run(OP_ATTENTION, par);
    if (splits > 1) this.mergeSplits(a.out, numKvHeads, group, splits, d);
  }

  quantAttention(a: QuantAttentionArgs): void {
    const { n, numHeads, numKvHeads, headDim: d } = a;
    if (n <= 0) return;
    // one item per thread will do: decoding a tile costs more than scoring it, so an uneven spread of
    // whole KV groups beats decoding a group twice
    const { group, seen, par, hg, splits } = this.attentionPlan(a, 1, QATT_TILE);
    // Several queries: each item takes a block of them, so a decoded tile serves them all (scores of a
    // block kept to about 2 MiB per thread).
    const qb = n === 1 ? 1 : queryBlock(n, hg, seen);
    this.ensureScratch(attentionScratchBytes('packed', qb * hg, seen, d));
    this.ensureStreamDescs();
    const b = this.begin();
    writeStreamDesc(this.qdescKeys!, a.keys, rowCodeBytes(d, a.keys.bits));
    writeStreamDesc(this.qdescValues!, a.values, rowCodeBytes(d, a.values.bits));
    b.ptr(QATT_OUT, a.out);
    b.ptr(QATT_Q, a.q);
    b.int(QATT_N, n);
    b.int(QATT_VISIBLE, a.visible);
    b.int(QATT_CAPACITY, a.capacity);
    b.int(QATT_NUM_HEADS, numHeads);
    b.int(QATT_NUM_KV_HEADS, numKvHeads);
    b.int(QATT_HEAD_DIM, d);
    b.float(QATT_SCALE, a.scale);
    b.ptr(QATT_LAST_PROBS, a.lastProbs);
    b.ptr(QATT_RECEIVED, a.received);
    b.ptr(QATT_SCRATCH, this.scratch);
    b.int(QATT_SCRATCH_STRIDE, this.scratchStride);
    b.ptr(QATT_POSITIONS, a.positions);
    b.ptr(QATT_KEYS, this.qdesc);
    b.ptr(QATT_VALUES, this.qdesc + STREAM_DESC_BYTES);
    b.ptr(QATT_ROPE_LO, a.ropeLo);
    b.ptr(QATT_ROPE_HI, a.ropeHi);
    b.int(QATT_ROPE_INTERLEAVED, a.ropeInterleaved ? 1 : 0);
    b.int(QATT_HEAD_GROUP, hg);
    b.int(QATT_SPLITS, splits);
    b.int(QATT_QUERY_BLOCK, qb);
    b.ptr(QATT_MASK, a.mask ?? 0);
    b.ptr(QATT_PARTIAL, splits > 1 ? this.partial : 0);
    b.int(QATT_FAST, a.fast ? 1 : 0);
    this.run(OP_QUANT_ATTENTION, par);
    if (splits > 1) this.mergeSplits(a.out, numKvHeads, group, splits, d);
  }

  quantize(a: QuantizeArgs): void {
    const d = a.headDim;
    if (a.n <= 0 || a.heads <= 0) return;
    const par = this.parallelism(a.n * a.heads * d * 8);
    this.ensureStreamDescs();
    const b = this.begin();
    writeStreamDesc(this.qdescQuantize!, a.stream, rowCodeBytes(d, a.stream.bits));
    b.ptr(QUANTIZE_SRC, a.src);
    b.int(QUANTIZE_N, a.n);
    b.int(QUANTIZE_HEAD0, a.head0);
    b.int(QUANTIZE_HEADS, a.heads);
    b.int(QUANTIZE_FROM, a.from);
    b.int(QUANTIZE_CAPACITY, a.capacity);
    b.int(QUANTIZE_HEAD_DIM, d);
    b.ptr(QUANTIZE_STREAM, this.qdesc + 2 * STREAM_DESC_BYTES);
    b.int(QUANTIZE_KIND, a.kind === 'unit' ? 1 : 0);
    b.ptr(QUANTIZE_MIDS, a.mids);
    b.int(QUANTIZE_MIDS_LENGTH, a.midsLength);
    this.run(OP_QUANTIZE, par);
  }

  xorWords(src: number, bytes: number): number {
    checkReadSize(bytes);
    if (bytes === 0) return 0;
    const chunk = 1 << 20; // 1 MiB per work item
    const items = Math.ceil(bytes / chunk);
    if (items * 16 > this.readOutBytes) {
      if (this.readOut) this.arena.free(this.readOut);
      this.readOutBytes = items * 16;
      this.readOut = this.arena.alloc(this.readOutBytes);
    }
    const b = this.begin();
    b.ptr(READ_SRC, src);
    b.int(READ_BYTES, bytes);
    b.int(READ_CHUNK, chunk);
    b.ptr(READ_OUT, this.readOut);
    if (this.run(OP_READ, this.pool && items > 1 ? this.threads : 1) !== items) {
      throw new Error('build/kernels.wasm does not know the streaming read: rebuild it (`npm run build:kernels`)');
    }
    let x = 0;
    for (const w of this.arena.i32(this.readOut, items * 4)) x ^= w;
    return x >>> 0;
  }

  private readOut = 0;
  private readOutBytes = 0;

  private ensureStreamDescs(): void {
    if (this.qdesc) return;
    const m = this.arena.memory;
    this.qdesc = this.arena.alloc(3 * STREAM_DESC_BYTES);
    this.qdescKeys = new ArgBlock(m, this.qdesc, STREAM_DESC_BYTES);
    this.qdescValues = new ArgBlock(m, this.qdesc + STREAM_DESC_BYTES, STREAM_DESC_BYTES);
    this.qdescQuantize = new ArgBlock(m, this.qdesc + 2 * STREAM_DESC_BYTES, STREAM_DESC_BYTES);
  }

  private partial = 0;
  private partialBytes = 0;
  private mergeAcc = new Float64Array(0); // reused: a decode step allocates nothing

  private ensurePartial(floats: number): void {
    if (floats * 4 <= this.partialBytes) return;
    if (this.partial) this.arena.free(this.partial);
    this.partialBytes = floats * 8;
    this.partial = this.arena.alloc(this.partialBytes);
  }

  /**
   * out[h] = Σ_p e^(m_p − M)·acc_p / Σ_p e^(m_p − M)·l_p over the slot ranges of a split decode job
   * (whole KV groups per item: item (kvh, p) holds [m, l, acc (d)] for each head of the group).
   */
  private mergeSplits(out: number, numKv: number, group: number, splits: number, d: number): void {
    const parts = this.arena.f32(this.partial, numKv * splits * group * (d + 2));
    const o = this.arena.f32(out, numKv * group * d);
    if (this.mergeAcc.length < d) this.mergeAcc = new Float64Array(d);
    const acc = this.mergeAcc;
    const partStride = group * (d + 2); // floats from item (kvh, p) to (kvh, p + 1)
    for (let kvh = 0; kvh < numKv; kvh++) {
      for (let j = 0; j < group; j++) {
        const first = (kvh * splits * group + j) * (d + 2);
        let m = -Infinity;
        for (let p = 0; p < splits; p++) m = Math.max(m, parts[first + p * partStride]!);
        let l = 0;
        acc.fill(0, 0, d);
        for (let p = 0; p < splits; p++) {
          const base = first + p * partStride;
          if (parts[base] === -Infinity) continue;
          const w = Math.exp(parts[base]! - m);
          l += w * parts[base + 1]!;
          for (let i = 0; i < d; i++) acc[i] = acc[i]! + w * parts[base + 2 + i]!;
        }
        const inv = l > 0 ? 1 / l : 0;
        for (let i = 0; i < d; i++) o[(kvh * group + j) * d + i] = acc[i]! * inv;
      }
    }
  }

  rmsnorm(out: number, x: number, weight: number, n: number, dim: number, eps: number): void {
    this.x.rmsnorm(out, x, weight, n, dim, eps);
  }

  rope(x: number, n: number, heads: number, positions: number, rope: Rope): void {
    if (n <= 0) return;
    const half = rope.headDim >> 1;
    const pos = this.arena.i32(positions, n);
    // q and k are rotated with the same positions back to back: reuse the cos/sin table then.
    if (!this.ropeTableFits(rope, pos)) {
      const bytes = n * half * 16;
      if (bytes > this.ropeTableBytes) {
        if (this.ropeTable) this.arena.free(this.ropeTable);
        this.ropeTableBytes = Math.max(bytes, this.ropeTableBytes * 2);
        this.ropeTable = this.arena.alloc(this.ropeTableBytes);
        this.ropePositions = new Int32Array(this.ropeTableBytes / (half * 16));
      }
      const table = new Float64Array(this.arena.memory.buffer, this.ropeTable, n * half * 2);
      for (let t = 0; t < n; t++) {
        for (let i = 0; i < half; i++) {
          const angle = rope.angle(pos[t]!, i);
          table[(t * half + i) * 2] = Math.cos(angle);
          table[(t * half + i) * 2 + 1] = Math.sin(angle);
        }
      }
      this.ropePositions.set(pos);
      this.ropeN = n;
      this.ropeFor = rope;
    }
    this.x.rope(x, n, heads, rope.headDim, this.ropeTable, rope.interleaved ? 1 : 0);
  }

  ropeRows(dst: number, src: number, dtype: SlotDType, n: number, heads: number, stride: number, positions: number, rope: Rope): void {
    if (n <= 0 || heads <= 0) return;
    if (heads > 1 && stride < n) throw new RangeError(`ropeRows: heads ${stride} rows apart overlap ${n} rows`);
    let top = 0;
    for (let h = 0; h < heads; h++) {
      const pos = this.arena.i32(positions + h * stride * 4, n);
      for (let t = 0; t < n; t++) top = Math.max(top, checkPosition(pos[t]!));
    }
    if (this.ropeRowsFor !== rope || top >= this.ropeRowsCount) this.growRopeRows(rope, top + 1);
    const b = this.begin();
    b.ptr(ROPE_DST, dst);
    b.ptr(ROPE_SRC, src);
    b.ptr(ROPE_POSITIONS, positions);
    b.ptr(ROPE_TABLE, this.ropeRowsTable);
    b.int(ROPE_N, n);
    b.int(ROPE_HEADS, heads);
    b.int(ROPE_STRIDE, stride);
    b.int(ROPE_HEAD_DIM, rope.headDim);
    b.int(ROPE_F16, dtype === 'f16' ? 1 : 0);
    b.int(ROPE_INTERLEAVED, rope.interleaved ? 1 : 0);
    this.run(OP_ROPE_ROWS, heads * n > ROPE_CHUNK_ROWS ? this.parallelism(heads * n * rope.headDim * 8) : 1);
  }

  /** Per position in [0, count) or more: the cosines of its pairs, then their sines, with rope's own expressions. */
  private growRopeRows(rope: Rope, count: number): void {
    const half = rope.headDim >> 1;
    const from = this.ropeRowsFor === rope ? this.ropeRowsCount : 0;
    const rows = Math.max(count, 2 * from);
    const next = this.arena.alloc(rows * half * 16);
    if (from > 0) this.arena.u8(next, from * half * 16).set(this.arena.u8(this.ropeRowsTable, from * half * 16));
    if (this.ropeRowsTable) this.arena.free(this.ropeRowsTable);
    const table = new Float64Array(this.arena.memory.buffer, next, rows * half * 2);
    for (let p = from; p < rows; p++) {
      for (let i = 0; i < half; i++) {
        const angle = rope.angle(p, i);
        table[p * 2 * half + i] = Math.cos(angle);
        table[(p * 2 + 1) * half + i] = Math.sin(angle);
      }
    }
    this.ropeRowsTable = next;
    this.ropeRowsCount = rows;
    this.ropeRowsFor = rope;
  }

  /** Whether the cos/sin table was built for this rope and these positions. */
  private ropeTableFits(rope: Rope, pos: Int32Array): boolean {
    if (this.ropeFor !== rope || this.ropeN !== pos.length) return false;
    for (let t = 0; t < pos.length; t++) if (this.ropePositions[t] !== pos[t]) return false;
    return true;
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

  /** Takes the control block for a job's arguments (no worker reads it until `run`). */
  private begin(): ArgBlock {
    this.pool?.lock();
    return this.args;
  }

  /** Runs the job whose arguments were written since `begin` on `par` threads, the caller included; returns its work items. */
  private run(op: number, par: number): number {
    const w = this.words;
    w[CTRL_OP] = op;
    w[CTRL_NTHREADS] = par;
    w[CTRL_NEXT] = 0;
    this.pool?.publish(par > 1);
    const items = this.x.run(this.ctrl, 0);
    this.pool?.wait(items);
    return items;
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
