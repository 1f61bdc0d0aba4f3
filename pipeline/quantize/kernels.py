"""The two ways a slab of float rows becomes ggml blocks: ggml's own quantizers, or prep's numpy ones.

ggml's are `ggml_quantize_chunk` from the llama extra's libggml: the very function llama_model_quantize
runs, so the bytes are llama.cpp's by construction, at C speed, and ctypes drops the GIL for the call, so
quantize_gguf's worker threads keep every core busy. The numpy ones (blocks.py, q6_k.py, gguf.quants) need
nothing beyond prep's own dependencies; the tests hold them byte for byte to llama.cpp, and they are what
runs when the extra is not installed (or when asked for by name, `kernels="numpy"`).
"""

from __future__ import annotations

import ctypes
from typing import Protocol

import numpy as np
from gguf import GGMLQuantizationType
from gguf.quants import quantize as gguf_quantize

from pipeline.errors import PrepError, UsageError
from pipeline.llamacpp import llama_cpp_installed, load_libggml
from pipeline.quantize.blocks import quantize_q4_0, quantize_q4_1, quantize_q5_0, quantize_q5_1, quantize_q8_0
from pipeline.quantize.q6_k import quantize_q6_k

Q = GGMLQuantizationType
KERNEL_NAMES = ("ggml", "numpy")
_BLOCK_MAJOR = {
    Q.Q8_0: quantize_q8_0,
    Q.Q4_0: quantize_q4_0,
    Q.Q5_0: quantize_q5_0,
    Q.Q4_1: quantize_q4_1,
    Q.Q5_1: quantize_q5_1,
}


class Kernels(Protocol):
    """Turns (rows, row length) values stored as `source` into the bytes of those rows as `target`."""

    name: str

    def convert(
        self, slab: np.ndarray, source: GGMLQuantizationType, target: GGMLQuantizationType
    ) -> np.ndarray:
        """`slab` holds the raw values (float32, float16, or bfloat16 as uint16); returns the target rows'
        bytes, flat uint8."""
        ...


def to_float32(slab: np.ndarray, source: GGMLQuantizationType) -> np.ndarray:
    if source == Q.F32:
        return np.asarray(slab, dtype=np.float32)
    if source == Q.F16:
        return slab.astype(np.float32)
    return (slab.astype(np.uint32) << 16).view(np.float32)


class NumpyKernels:
    name = "numpy"

    def convert(
        self, slab: np.ndarray, source: GGMLQuantizationType, target: GGMLQuantizationType
    ) -> np.ndarray:
        if target in _BLOCK_MAJOR:  # they read float16 and float32 themselves
            return _BLOCK_MAJOR[target](slab if source != Q.BF16 else to_float32(slab, source))
        values = to_float32(slab, source)
        if target == Q.Q6_K:
            return quantize_q6_k(values)
        return np.ascontiguousarray(gguf_quantize(values, target)).view(np.uint8).reshape(-1)


class GgmlKernels:
    name = "ggml"

    def __init__(self, libggml: ctypes.CDLL) -> None:
        self._quantize_chunk = libggml.ggml_quantize_chunk
        self._quantize_chunk.restype = ctypes.c_size_t
        self._quantize_chunk.argtypes = [
            ctypes.c_int,  # type
            ctypes.c_void_p,  # const float * src
            ctypes.c_void_p,  # void * dst
            ctypes.c_int64,  # start
            ctypes.c_int64,  # nrows
            ctypes.c_int64,  # n_per_row
            ctypes.c_void_p,  # const float * imatrix
        ]
        self._row_size = libggml.ggml_row_size
        self._row_size.restype = ctypes.c_size_t
        self._row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        self._validate = libggml.ggml_validate_row_data
        self._validate.restype = ctypes.c_bool
        self._validate.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]

    def convert(
        self, slab: np.ndarray, source: GGMLQuantizationType, target: GGMLQuantizationType
    ) -> np.ndarray:
        values = np.ascontiguousarray(to_float32(slab, source))
        n_rows, width = values.shape
        out = np.empty(n_rows * self._row_size(int(target), width), dtype=np.uint8)
        written = self._quantize_chunk(
            int(target), values.ctypes.data, out.ctypes.data, 0, n_rows, width, None
        )
        if written != out.size:
            raise PrepError(f"ggml wrote {written} bytes of {target.name} where {out.size} were expected")
        # What llama_model_quantize checks after each chunk: a scale beyond float16 (from huge or
        # non-finite weights) makes it refuse the tensor, so prep does too.
        if not self._validate(int(target), out.ctypes.data, out.size):
            raise PrepError(
                f"the {target.name} blocks hold non-finite scales or values (ggml's check, as in llama.cpp)",
                hint="check the source weights for overflowed or corrupt values",
            )
        return out


def select_kernels(name: str | None = None) -> Kernels:
    """`ggml`, `numpy`, or (None) ggml's when the llama extra is installed and numpy's otherwise."""
    if name is None:
        name = "ggml" if llama_cpp_installed() else "numpy"
    if name == "numpy":
        return NumpyKernels()
    if name == "ggml":
        return GgmlKernels(load_libggml("ggml's quantizers"))
    raise UsageError(f"unknown quantize kernels {name!r}", hint=f"use one of: {', '.join(KERNEL_NAMES)}")
