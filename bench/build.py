"""Quantization speed against llama.cpp, in the same run: kernels and whole files.

Kernels: a 4096 x 4096 f32 tensor through our numpy quantizers (Q8_0, Q4_0, Q5_0 in
pipeline.quantize.blocks, Q6_K in pipeline.quantize.q6_k) and through ggml_quantize_chunk from
llama-cpp-python's libggml, both on one thread: values/s, the ratio and whether the bytes are identical.

Files: Q8_0 and Q4_0 of a ~130M-parameter F16 llama GGUF, ours (quantize_gguf, two worker threads)
against llama_model_quantize (all cores). Its 32,768 x 768 output tensor goes Q6_K in the Q4_0 file,
about a fifth of the values as in Llama-3.2-1B. Prints both times, the ratio (ours / llama.cpp; target
<= 2.0) and whether the files are identical.

Needs the `llama` extra. The model is generated (tests/tinymodels.py) and converted by pipeline.convert.
Exits 1 if any bytes differ or a file ratio misses the target.
"""

from __future__ import annotations

import ctypes
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.convert.converter import convert_model  # noqa: E402
from pipeline.llamacpp import quantize_with_llama  # noqa: E402
from pipeline.quantize import quantize_gguf  # noqa: E402
from pipeline.quantize.blocks import quantize_q4_0, quantize_q5_0, quantize_q8_0  # noqa: E402
from pipeline.quantize.plan import NATIVE_FILE_TYPES  # noqa: E402
from pipeline.quantize.q6_k import quantize_q6_k  # noqa: E402
from pipeline.sha import sha256_file  # noqa: E402
from tests.tinymodels import Dims, make_tiny_model  # noqa: E402

# 16 layers of a 768-wide llama with grouped-query attention and a 2048-wide MLP, 32,768 embedding rows.
DIMS = Dims(
    n_layer=16, n_embd=768, n_head=12, n_kv_head=4, n_ff=2048, n_ctx=512, bpe_vocab=400, model_vocab=32768
)
KERNEL_SHAPE = (4096, 4096)
ROUNDS = 2
TARGET_RATIO = 2.0
# ggml_type numbers of the kernels compared.
KERNELS: dict[str, tuple[int, Callable[[np.ndarray], np.ndarray]]] = {
    "Q8_0": (8, quantize_q8_0),
    "Q4_0": (2, quantize_q4_0),
    "Q5_0": (6, quantize_q5_0),
    "Q6_K": (14, quantize_q6_k),
}


def best_time(run: Callable[[], object]) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def ggml_quantizer(ggml_type: int) -> Callable[[np.ndarray], np.ndarray]:
    """ggml_quantize_chunk on one thread, from llama-cpp-python's own libggml."""
    from llama_cpp._ggml import libggml

    quantize_chunk = libggml.ggml_quantize_chunk
    quantize_chunk.restype = ctypes.c_size_t
    quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    quantize_chunk.argtypes += [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    row_size = libggml.ggml_row_size
    row_size.restype = ctypes.c_size_t
    row_size.argtypes = [ctypes.c_int, ctypes.c_int64]

    def run(rows: np.ndarray) -> np.ndarray:
        n_rows, width = rows.shape
        out = np.empty(n_rows * row_size(ggml_type, width), dtype=np.uint8)
        written = quantize_chunk(ggml_type, rows.ctypes.data, out.ctypes.data, 0, n_rows, width, None)
        assert written == out.size
        return out

    return run


def bench_kernels() -> bool:
    values = np.random.default_rng(0).standard_normal(KERNEL_SHAPE).astype(np.float32)
    millions = values.size / 1e6
    identical_all = True
    for name, (ggml_type, ours) in KERNELS.items():
        theirs = ggml_quantizer(ggml_type)
        t_theirs = best_time(lambda t=theirs: t(values))
        t_ours = best_time(lambda o=ours: o(values))
        identical = np.array_equal(ours(values), theirs(values))
        identical_all &= identical
        print(
            f"kernel {name}: ours {millions / t_ours:.1f}M values/s, ggml {millions / t_theirs:.1f}M/s "
            f"(one thread each), ratio {t_ours / t_theirs:.2f}, byte-identical: {identical}"
        )
    return identical_all


def bench_files() -> tuple[bool, float]:
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        root = Path(tmp)
        model_dir = make_tiny_model("llama", root / "hf", dims=DIMS)
        source = root / "model-f16.gguf"
        report = convert_model(model_dir, source, "f16")
        print(
            f"model: {report.parameter_count / 1e6:.1f}M parameters, F16 GGUF {source.stat().st_size:,} bytes"
        )
        worst, identical_all = 0.0, True
        for qtype in ("q8_0", "q4_0"):
            ours, theirs = root / f"ours-{qtype}.gguf", root / f"llama-{qtype}.gguf"
            file_type = int(NATIVE_FILE_TYPES[qtype][0])
            t_llama = best_time(lambda t=theirs, f=file_type: quantize_with_llama(source, t, f))
            t_ours = best_time(lambda o=ours, q=qtype: quantize_gguf(source, o, q))
            identical = sha256_file(ours) == sha256_file(theirs)
            identical_all &= identical
            ratio = t_ours / t_llama
            worst = max(worst, ratio)
            print(
                f"file {qtype}: ours {t_ours:.2f} s, llama_model_quantize {t_llama:.2f} s, "
                f"ratio {ratio:.2f} (target <= {TARGET_RATIO}), byte-identical: {identical}"
            )
    return identical_all, worst


def main() -> int:
    kernels_identical = bench_kernels()
    files_identical, worst = bench_files()
    return 0 if kernels_identical and files_identical and worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
