#!/usr/bin/env python3
"""ggml's own RoPE (ggml_rope_ext on the CPU backend node-llama-cpp ships), through ctypes: the independent
reference for kvpack's RoPE scaling. Rotates ROWS vectors of DIMS numbers at given positions.

usage: llama-cpp-rope.py DIMS MODE FREQ_SCALE EXT_FACTOR N_CTX_ORIG BETA_FAST BETA_SLOW THETA HAS_FACTORS
  stdin: int32 N, then N int32 positions, then N*DIMS f32 values, then DIMS/2 f32 divisors
  when HAS_FACTORS is 1; stdout: the N*DIMS rotated f32 values. MODE 0 pairs (2i, 2i+1), 2 pairs (i, i+DIMS/2).
Run from the project root after npm ci, with Debian's python3 (stdlib only)."""
import ctypes, glob, os, struct, sys

dims, mode = int(sys.argv[1]), int(sys.argv[2])
freq_scale, ext_factor = float(sys.argv[3]), float(sys.argv[4])
n_ctx_orig, beta_fast, beta_slow, theta = int(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
has_factors = sys.argv[9] == '1'
libdir = 'node_modules/@node-llama-cpp/linux-x64/bins/linux-x64'
base = ctypes.CDLL(glob.glob(os.path.join(libdir, 'libggml-base*.so*'))[0], mode=ctypes.RTLD_GLOBAL)
cpu = ctypes.CDLL(os.path.join(libdir, 'libggml-cpu-x64.so'), mode=ctypes.RTLD_GLOBAL)

class InitParams(ctypes.Structure):
    _fields_ = [('mem_size', ctypes.c_size_t), ('mem_buffer', ctypes.c_void_p), ('no_alloc', ctypes.c_bool)]

data = sys.stdin.buffer.read()
n = struct.unpack_from('<i', data, 0)[0]
p = ctypes.c_void_p
base.ggml_init.restype = p
base.ggml_init.argtypes = [InitParams]
base.ggml_new_tensor_1d.restype = p
base.ggml_new_tensor_1d.argtypes = [p, ctypes.c_int, ctypes.c_int64]
base.ggml_new_tensor_3d.restype = p
base.ggml_new_tensor_3d.argtypes = [p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]
base.ggml_get_data.restype = p
base.ggml_get_data.argtypes = [p]
base.ggml_rope_ext.restype = p
base.ggml_rope_ext.argtypes = [p, p, p, p, ctypes.c_int, ctypes.c_int, ctypes.c_int] + [ctypes.c_float] * 6
base.ggml_new_graph.restype = p
base.ggml_new_graph.argtypes = [p]
base.ggml_build_forward_expand.argtypes = [p, p]
cpu.ggml_graph_compute_with_ctx.argtypes = [p, p, ctypes.c_int]
base.ggml_free.argtypes = [p]

ctx = base.ggml_init(InitParams(64 * 2**20, None, False))
x = base.ggml_new_tensor_3d(ctx, 0, dims, 1, n)            # GGML_TYPE_F32: [dims, 1 head, n tokens]
pos = base.ggml_new_tensor_1d(ctx, 26, n)                  # GGML_TYPE_I32
ctypes.memmove(base.ggml_get_data(pos), data[4:4 + 4 * n], 4 * n)
at = 4 + 4 * n
ctypes.memmove(base.ggml_get_data(x), data[at:at + 4 * n * dims], 4 * n * dims)
factors = None
if has_factors:
    factors = base.ggml_new_tensor_1d(ctx, 0, dims // 2)
    ctypes.memmove(base.ggml_get_data(factors), data[at + 4 * n * dims:], 2 * dims)
y = base.ggml_rope_ext(ctx, x, pos, factors, dims, mode, n_ctx_orig, theta, freq_scale, ext_factor, 1.0, beta_fast, beta_slow)
graph = base.ggml_new_graph(ctx)
base.ggml_build_forward_expand(graph, y)
cpu.ggml_graph_compute_with_ctx(ctx, graph, 1)
sys.stdout.buffer.write(ctypes.string_at(base.ggml_get_data(y), 4 * n * dims))
base.ggml_free(ctx)
