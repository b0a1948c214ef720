/**
 * The kernel ABI: the one definition of the control block, the job op codes and every job's argument
 * layout, shared by the TypeScript side (wasm.ts, pool.ts, worker.ts) and the AssemblyScript side
 * (assembly/*.ts imports this very file). It must stay in the subset both compilers accept: plain
 * integer constants, no imports, no types.
 *
 * A job is described in a control block of CONTROL_BYTES: Int32 words at the CTRL_* indices, then the
 * job's arguments from byte ARGS on, at the byte offsets below (relative to ARGS). Fields are 4 bytes:
 * pointers are u32 byte offsets, counts i32, `scale` an f32.
 *
 * Pointers all address the one shared memory (memory 0). Should a call later need to address more than
 * one memory, each pointer field gains a memory index next to its offset: pointer fields are written
 * only through ArgBlock.ptr (args.ts) and listed by name here, so both sides change in one place.
 */

// ---- control block: Int32 word indices (byte offset / 4)
/** Sequence lock: odd while the caller writes a job, even once it is published. */
export const CTRL_SEQ = 0;
/** Work items finished (atomic). */
export const CTRL_DONE = 1;
/** The job's op code (OP_*). */
export const CTRL_OP = 2;
/** Threads the job may use. */
export const CTRL_NTHREADS = 3;
/** Next work item to take (atomic). */
export const CTRL_NEXT = 4;
/** Set by a worker whose kernel trapped. */
export const CTRL_ERR = 5;
/** Workers inside the current job. */
export const CTRL_ACTIVE = 6;
/** Byte offset of the job arguments inside the control block. */
export const ARGS = 32;
export const CONTROL_BYTES = 256;

// ---- op codes (CTRL_OP)
/** Workers leave. */
export const OP_QUIT = -1;
export const OP_MATMUL = 1;
export const OP_ATTENTION = 2;
export const OP_QUANT_ATTENTION = 3;
export const OP_QUANTIZE = 4;
/** A streaming read of a buffer (memory bandwidth, for the bench's roofline column). */
export const OP_READ = 5;
/** Keys kept before RoPE, rotated into a copy (Kernels.ropeRows). */
export const OP_ROPE_ROWS = 6;

// ---- matrix dtype codes
export const DT_F32 = 0;
export const DT_F16 = 1;
export const DT_BF16 = 2;
export const DT_Q8_0 = 3;
// GGML block formats (assembly/ggml.ts, src/kernels/ggml/)
export const DT_Q4_0 = 4;
export const DT_Q4_1 = 5;
export const DT_Q5_0 = 6;
export const DT_Q5_1 = 7;
export const DT_Q2_K = 8;
export const DT_Q3_K = 9;
export const DT_Q4_K = 10;
export const DT_Q5_K = 11;
export const DT_Q6_K = 12;
export const DT_IQ4_NL = 13;
export const DT_IQ4_XS = 14;
/** Added to a block dtype code for a matvec on 8-bit activations (the integer way). */
export const DT_INT_DOT = 64;
/** Per-thread scratch one decoded block takes (codes and group scales). */
export const BLOCK_SCRATCH = 384;

// ---- OP_MATMUL arguments: out_p[n × rows_p] = x[n × cols] · w_pᵀ for 1..MATMUL_MAX_PARTS matrices
// of one dtype and cols (q, k and v, or gate and up: one job, one pass of the threads)
export const MATMUL_X = 0; // ptr
export const MATMUL_DTYPE = 4; // DT_*
export const MATMUL_COLS = 8;
export const MATMUL_N = 12;
/** Rows per work item. */
export const MATMUL_CHUNK = 16;
export const MATMUL_SCRATCH = 20; // ptr: thread t's scratch starts at SCRATCH + t·SCRATCH_STRIDE
export const MATMUL_SCRATCH_STRIDE = 24;
export const MATMUL_PARTS = 28;
/** The parts' records from here, MATMUL_PART_BYTES each: output, matrix and its rows. */
export const MATMUL_PART = 32;
export const MATMUL_PART_BYTES = 12;
export const PART_OUT = 0; // ptr
export const PART_W = 4; // ptr
export const PART_ROWS = 8;
export const MATMUL_MAX_PARTS = 4;
/** Float dtypes at 2..MATMUL_FEW tokens (batched decode) take the few-token path: a quad of rows at a
 *  time converted into scratch, every token run over it (assembly/matmul.ts matmulFew). */
export const MATMUL_FEW = 16;

// ---- OP_ATTENTION arguments (see AttentionArgs in types.ts)
export const ATT_OUT = 0; // ptr
export const ATT_Q = 4; // ptr
export const ATT_N = 8;
export const ATT_KEYS = 12; // ptr
export const ATT_VALUES = 16; // ptr
/** 1: keys and values are f16, 2: values only (keys f32), 0: neither. */
export const ATT_F16 = 20;
export const ATT_CAPACITY = 24;
export const ATT_VISIBLE = 28;
export const ATT_MASK = 32; // ptr, 0: none
export const ATT_NUM_HEADS = 36;
export const ATT_NUM_KV_HEADS = 40;
export const ATT_HEAD_DIM = 44;
export const ATT_SCALE = 48; // f32
export const ATT_LAST_PROBS = 52; // ptr, 0: none
export const ATT_RECEIVED = 56; // ptr, 0: none
/** Query heads per work item. */
export const ATT_HEAD_GROUP = 60;
export const ATT_SCRATCH = 64; // ptr
export const ATT_SCRATCH_STRIDE = 68;
/** Queries per work item: each converted block of keys/values is used by all of them. */
export const ATT_QUERY_BLOCK = 72;
/** Slot ranges per (KV head, head group) of a single-query job; > 1: partial sums go to PARTIAL. */
export const ATT_SPLITS = 76;
export const ATT_PARTIAL = 80; // ptr
/** Slots per block of converted keys/values in the float attention kernel. */
export const ATT_BLOCK = 64;

// ---- OP_QUANT_ATTENTION arguments (see QuantAttentionArgs in quant/types.ts)
export const QATT_OUT = 0; // ptr
export const QATT_Q = 4; // ptr
export const QATT_N = 8;
export const QATT_VISIBLE = 12;
export const QATT_CAPACITY = 16;
export const QATT_NUM_HEADS = 20;
export const QATT_NUM_KV_HEADS = 24;
export const QATT_HEAD_DIM = 28;
export const QATT_SCALE = 32; // f32
export const QATT_LAST_PROBS = 36; // ptr, 0: none
export const QATT_RECEIVED = 40; // ptr, 0: none
export const QATT_SCRATCH = 44; // ptr
export const QATT_SCRATCH_STRIDE = 48;
export const QATT_POSITIONS = 52; // ptr
export const QATT_KEYS = 56; // ptr to a stream descriptor (STREAM_*)
export const QATT_VALUES = 60; // ptr to a stream descriptor
export const QATT_ROPE_LO = 64; // ptr
export const QATT_ROPE_HI = 68; // ptr
export const QATT_ROPE_INTERLEAVED = 72;
export const QATT_HEAD_GROUP = 76;
/** Slot ranges per (KV head, head group) of a single-query job; > 1: partial sums go to PARTIAL. */
export const QATT_SPLITS = 80;
export const QATT_PARTIAL = 84; // ptr
/** Queries per work item of a multi-query job: each decoded tile is scored against all of them. */
export const QATT_QUERY_BLOCK = 88;
/** 1: the fast path (integer dot products on rounded queries and weights, see packed-attention.ts); 0: exact. */
export const QATT_FAST = 92;
/** ptr, 0: none; u8 [numHeads × capacity], non-zero leaves that slot out of that query head's softmax (AttentionArgs.mask). */
export const QATT_MASK = 96;
/** Slots per decoded tile; divides every channel-axis token group (32/64/128). */
export const QATT_TILE = 32;

// ---- OP_QUANTIZE arguments (see QuantizeArgs in quant/types.ts); one work item per row
export const QUANTIZE_SRC = 0; // ptr
export const QUANTIZE_N = 4;
export const QUANTIZE_HEAD0 = 8;
export const QUANTIZE_HEADS = 12;
export const QUANTIZE_FROM = 16;
export const QUANTIZE_CAPACITY = 20;
export const QUANTIZE_HEAD_DIM = 24;
export const QUANTIZE_STREAM = 28; // ptr to a stream descriptor
/** 0: 'int', 1: 'unit'. */
export const QUANTIZE_KIND = 32;
export const QUANTIZE_MIDS = 36; // ptr, f64
export const QUANTIZE_MIDS_LENGTH = 40;

// ---- stream descriptor of a packed store (QuantStream in quant/types.ts), byte offsets
export const STREAM_CODES = 0; // ptr
export const STREAM_BITS = 4;
export const STREAM_LUT = 8; // ptr
/** 1: channel axis, 0: token axis. */
export const STREAM_AXIS = 12;
export const STREAM_GROUP = 16;
export const STREAM_PARAMS = 20; // ptr
export const STREAM_PARAMS_HEAD_STRIDE = 24;
export const STREAM_OUTLIERS = 28; // ptr
export const STREAM_OCAP = 32;
export const STREAM_RING = 36; // ptr
export const STREAM_RING_SIZE = 40;
export const STREAM_QLEN = 44;
export const STREAM_SINK_ROWS = 48; // ptr
export const STREAM_SINKS = 52;
export const STREAM_ROPE = 56;
export const STREAM_ROW_BYTES = 60;
export const STREAM_DESC_BYTES = 64;

// ---- OP_READ arguments: XOR of the 16-byte blocks of each chunk of [src, src + bytes) into out[item]
export const READ_SRC = 0; // ptr
export const READ_BYTES = 4;
/** Bytes per work item (a multiple of 64). */
export const READ_CHUNK = 8;
export const READ_OUT = 12; // ptr: 16 bytes per work item

// ---- OP_ROPE_ROWS arguments: for heads h < ROPE_HEADS and rows t < ROPE_N, dst row r (f32) = src row r
// (f32, or f16) turned to position positions[r], r = h·ROPE_STRIDE + t; each work item takes ROPE_CHUNK_ROWS rows of a head
export const ROPE_DST = 0; // ptr
export const ROPE_SRC = 4; // ptr
export const ROPE_POSITIONS = 8; // ptr: Int32 [n], each ≥ 0
export const ROPE_TABLE = 12; // ptr: per position, the f64 cosines of the headDim/2 pairs, then their sines
export const ROPE_N = 16;
export const ROPE_HEAD_DIM = 20;
export const ROPE_F16 = 24; // 1: src rows of f16, 0: f32
export const ROPE_INTERLEAVED = 28; // 1: pairs (2j, 2j+1), 0: pairs (j, j + headDim/2)
export const ROPE_HEADS = 32;
export const ROPE_STRIDE = 36;
export const ROPE_CHUNK_ROWS = 64;
