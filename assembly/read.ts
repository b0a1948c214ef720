// OP_READ: a streaming read of a buffer on every thread (the bench's memory bandwidth).

import { ARGS, CTRL_DONE, CTRL_NEXT, READ_BYTES, READ_CHUNK, READ_OUT, READ_SRC } from '../src/kernels/abi';

const C_DONE: usize = <usize>CTRL_DONE << 2;
const C_NEXT: usize = <usize>CTRL_NEXT << 2;
const C_ARGS: usize = <usize>ARGS;

/** OP_READ: each work item XORs the 16-byte blocks of one chunk (4 independent loads per step). */
export function readJob(ctrl: usize): i32 {
  const a = ctrl + C_ARGS;
  const src = <usize>load<u32>(a, READ_SRC);
  const bytes = load<i32>(a, READ_BYTES);
  const chunk = load<i32>(a, READ_CHUNK);
  const items = (bytes + chunk - 1) / chunk;
  for (;;) {
    const it = atomic.add<i32>(ctrl + C_NEXT, 1);
    if (it >= items) break;
    let p = src + <usize>it * <usize>chunk;
    const end = src + <usize>min(bytes, (it + 1) * chunk);
    let x0 = i32x4.splat(0), x1 = x0, x2 = x0, x3 = x0;
    for (; p < end; p += 64) {
      x0 = v128.xor(x0, v128.load(p));
      x1 = v128.xor(x1, v128.load(p, 16));
      x2 = v128.xor(x2, v128.load(p, 32));
      x3 = v128.xor(x3, v128.load(p, 48));
    }
    v128.store(<usize>load<u32>(a, READ_OUT) + (<usize>it << 4), v128.xor(v128.xor(x0, x1), v128.xor(x2, x3)));
    atomic.add<i32>(ctrl + C_DONE, 1);
  }
  return items;
}
