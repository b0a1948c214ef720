// Rows of the stored dtypes (f32, f16, bf16, Q8_0, GGML blocks) to and from f32.

import { BLOCK_SCRATCH, DT_F16, DT_F32, DT_Q8_0 } from '../src/kernels/abi';
import { blockRowBytes, dequantizeBlockRow, isBlockType } from './ggml';
import { bf2fHi, bf2fLo, f2h, h2f, h2fHi, h2fLo, h2fScalar } from './half';

/** Attention blocks: f16 slots to f32 with the fast conversion (len a multiple of 8 or tail scalar). */
export function convertF16Fast(dst: usize, src: usize, len: i32): void {
  let k = 0;
  for (; k + 8 <= len; k += 8) {
    const v = v128.load(src + (<usize>k << 1));
    const o = dst + (<usize>k << 2);
    v128.store(o, h2fLo(v), 0);
    v128.store(o, h2fHi(v), 16);
  }
  for (; k < len; k++) store<f32>(dst + (<usize>k << 2), h2fScalar(load<u16>(src + (<usize>k << 1))));
}

/** Bytes of one stored row of `cols` numbers. */
export function rowBytes(dt: i32, cols: i32): usize {
  if (isBlockType(dt)) return blockRowBytes(dt, cols);
  if (dt == DT_F32) return <usize>cols << 2;
  if (dt == DT_Q8_0) return <usize>(cols >> 5) * 34;
  return <usize>cols << 1;
}

/** dst[cols] (f32) = row src (stored dtype). */
export function convertRow(dst: usize, src: usize, dt: i32, cols: i32): void {
  if (dt == DT_F32) {
    memory.copy(dst, src, <usize>cols << 2);
    return;
  }
  let k = 0;
  if (dt == DT_Q8_0) {
    for (; k < cols; k += 32) {
      const p = src + <usize>(k >> 5) * 34;
      const d = f32x4.splat(h2fScalar(load<u16>(p)));
      const v0 = v128.load(p, 2);
      const v1 = v128.load(p, 18);
      const o = dst + (<usize>k << 2);
      const l0 = i16x8.extend_low_i8x16_s(v0);
      const h0 = i16x8.extend_high_i8x16_s(v0);
      const l1 = i16x8.extend_low_i8x16_s(v1);
      const h1 = i16x8.extend_high_i8x16_s(v1);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l0)), d), 0);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l0)), d), 16);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h0)), d), 32);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h0)), d), 48);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(l1)), d), 64);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(l1)), d), 80);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(h1)), d), 96);
      v128.store(o, f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(h1)), d), 112);
    }
    return;
  }
  const c8 = cols & ~7;
  if (dt == DT_F16) {
    for (; k < c8; k += 8) {
      const v = v128.load(src + (<usize>k << 1));
      const o = dst + (<usize>k << 2);
      v128.store(o, h2f(i32x4.extend_low_i16x8_u(v)), 0);
      v128.store(o, h2f(i32x4.extend_high_i16x8_u(v)), 16);
    }
    for (; k < cols; k++) store<f32>(dst + (<usize>k << 2), h2fScalar(load<u16>(src + (<usize>k << 1))));
  } else {
    for (; k < c8; k += 8) {
      const v = v128.load(src + (<usize>k << 1));
      const o = dst + (<usize>k << 2);
      v128.store(o, bf2fLo(v), 0);
      v128.store(o, bf2fHi(v), 16);
    }
    for (; k < cols; k++) store<u32>(dst + (<usize>k << 2), <u32>load<u16>(src + (<usize>k << 1)) << 16);
  }
}

/** A decoded block for embed, which runs on the calling thread only. */
const embedScratch = memory.data(<i32>BLOCK_SCRATCH, 16);

export function embed(out: usize, table: usize, dt: i32, cols: i32, ids: usize, n: i32): void {
  const rb = rowBytes(dt, cols);
  for (let t = 0; t < n; t++) {
    const id = load<i32>(ids + (<usize>t << 2));
    if (isBlockType(dt)) dequantizeBlockRow(out + <usize>t * (<usize>cols << 2), table + <usize>id * rb, dt, cols, embedScratch);
    else convertRow(out + <usize>t * (<usize>cols << 2), table + <usize>id * rb, dt, cols);
  }
}

export function toF16(out: usize, x: usize, len: i32): void {
  let i = 0;
  for (; i + 8 <= len; i += 8) {
    const a = f2h(v128.load(x + (<usize>i << 2)));
    const b = f2h(v128.load(x + (<usize>i << 2), 16));
    v128.store(out + (<usize>i << 1), i16x8.narrow_i32x4_u(a, b));
  }
  for (; i < len; i++) {
    const h = f2h(f32x4.splat(load<f32>(x + (<usize>i << 2))));
    store<u16>(out + (<usize>i << 1), <u16>i32x4.extract_lane(h, 0));
  }
}
