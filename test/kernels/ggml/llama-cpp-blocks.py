#!/usr/bin/env python3
"""llama.cpp's own quantizer and dequantizer for one GGML block format, through ctypes on the libggml-base
that node-llama-cpp ships: the independent reference for kvpack's block formats.

usage: llama-cpp-blocks.py TYPE_ID NAME ROWS COLS < rows.f32 > out
  reads ROWS*COLS little-endian f32 values, quantizes them with ggml_quantize_chunk (no importance matrix)
  and writes the quantized bytes followed by ROWS*COLS f32 values from ggml's dequantize_row_<name>.
Run from the project root after npm ci, with Debian's python3 (stdlib only)."""
import ctypes, glob, os, sys

type_id, name, rows, cols = int(sys.argv[1]), sys.argv[2].lower().replace('_k', '_K'), int(sys.argv[3]), int(sys.argv[4])
libdir = 'node_modules/@node-llama-cpp/linux-x64/bins/linux-x64'
base = glob.glob(os.path.join(libdir, 'libggml-base*.so*'))
if not base:
    sys.exit(f'no libggml-base in {libdir}: run npm ci first')
lib = ctypes.CDLL(base[0])
src = sys.stdin.buffer.read()
assert len(src) == rows * cols * 4, 'expected ROWS*COLS f32 values on stdin'
x = (ctypes.c_float * (rows * cols)).from_buffer_copy(src)
dst = (ctypes.c_uint8 * (rows * cols * 4))()
lib.ggml_quantize_init(ctypes.c_int(type_id))
lib.ggml_quantize_chunk.restype = ctypes.c_size_t
lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                    ctypes.c_int64, ctypes.c_void_p]
size = lib.ggml_quantize_chunk(type_id, x, dst, 0, rows, cols, None)
y = (ctypes.c_float * (rows * cols))()
deq = getattr(lib, f'dequantize_row_{name}')
deq.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
deq(dst, y, rows * cols)
sys.stdout.buffer.write(bytes(dst)[:size])
sys.stdout.buffer.write(bytes(y))
