"""Quantization speed against llama.cpp, in the same run: kernels and whole files.

Kernels: a 4096 x 4096 f32 tensor through prep's numpy quantizers (Q8_0, Q4_0, Q5_0 in
pipeline.quantize.blocks, Q6_K in pipeline.quantize.q6_k) and through ggml_quantize_chunk from
llama-cpp-python's libggml (pipeline.quantize.kernels), both on one thread: values/s, the ratio and
whether the bytes are identical.
Informational: the numpy kernels are the dependency-free reference, not the default path.

Files: every file type of a ~150M-parameter F16 llama GGUF, prep against llama_model_quantize (all cores
each), rounds interleaved so that load from other processes falls on both sides alike. Its 32,768 x 768
output tensor goes Q6_K in the Q4/Q5 files, about a fifth of the values as in Llama-3.2-1B.
- F16 ... Q5_1: prep's own writer (quantize_gguf, ggml's kernels since the llama extra is installed);
  target ratio <= 1.3 and byte-identical files. Q8_0 and Q4_0 also with the numpy kernels (reported only).
- K-quants (Q4_K_M, Q5_K_M, Q6_K): prep hands them to llama_model_quantize (pipeline.build.quantize_file);
  their ratio is reported too, against the same call made directly, from one round each by default
  (about a minute a run on two cores). Being one call on both sides, it measures only noise from other
  processes, so it does not count toward the target.

Needs the `llama` extra. The model is generated (tests/tinymodels.py) and converted by pipeline.convert.
Exits 1 if any bytes differ or a ratio of prep's own writer misses the target.
Usage: python -m bench.build [--rounds N] [--k-rounds N] [--types q8_0,q4_0,...] [--no-kernels]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.build import quantize_file  # noqa: E402
from pipeline.convert.converter import convert_model  # noqa: E402
from pipeline.llamacpp import quantize_with_llama  # noqa: E402
from pipeline.quantize import LLAMA_FILE_TYPES, NATIVE_FILE_TYPES, quantize_gguf  # noqa: E402
from pipeline.quantize.blocks import quantize_q4_0, quantize_q5_0, quantize_q8_0  # noqa: E402
from pipeline.quantize.kernels import select_kernels  # noqa: E402
from pipeline.quantize.q6_k import quantize_q6_k  # noqa: E402
from pipeline.sha import sha256_file  # noqa: E402
from tests.tinymodels import Dims, make_tiny_model  # noqa: E402

# 16 layers of a 768-wide llama with grouped-query attention and a 2048-wide MLP, 32,768 embedding rows.
DIMS = Dims(
    n_layer=16, n_embd=768, n_head=12, n_kv_head=4, n_ff=2048, n_ctx=512, bpe_vocab=400, model_vocab=32768
)
KERNEL_SHAPE = (4096, 4096)
TARGET_RATIO = 1.3
FILE_TYPES = ("f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k_m", "q5_k_m", "q6_k")
NUMPY_FILE_TYPES = ("q8_0", "q4_0")
KERNELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Q8_0": quantize_q8_0,
    "Q4_0": quantize_q4_0,
    "Q5_0": quantize_q5_0,
    "Q6_K": quantize_q6_k,
}


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def best_times(runs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """The best of `rounds` times of each run, the runs interleaved round by round."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(timed(run))
    return {name: min(values) for name, values in times.items()}


def bench_kernels(rounds: int) -> bool:
    values = np.random.default_rng(0).standard_normal(KERNEL_SHAPE).astype(np.float32)
    millions = values.size / 1e6
    identical_all = True
    ggml = select_kernels("ggml")
    for name, ours in KERNELS.items():
        target = GGMLQuantizationType[name]
        runs = {
            "ggml": partial(ggml.convert, values, GGMLQuantizationType.F32, target),
            "numpy": partial(ours, values),
        }
        times = best_times(runs, rounds)
        identical = np.array_equal(runs["numpy"](), runs["ggml"]())
        identical_all &= identical
        print(
            f"kernel {name}: numpy {millions / times['numpy']:.1f}M values/s, ggml "
            f"{millions / times['ggml']:.1f}M/s (one thread each), "
            f"ratio {times['numpy'] / times['ggml']:.2f}, byte-identical: {identical}"
        )
    return identical_all


def file_runs(source: Path, root: Path, qtype: str) -> dict[str, Callable[[], object]]:
    """What is timed for one file type: llama.cpp directly, prep's default path, and for some types prep
    with its numpy kernels."""
    if qtype in LLAMA_FILE_TYPES:
        file_type = int(LLAMA_FILE_TYPES[qtype])
        runs: dict[str, Callable[[], object]] = {"prep": lambda: quantize_file(source, root / "prep", qtype)}
    else:
        file_type = int(NATIVE_FILE_TYPES[qtype][0])
        runs = {"prep": lambda: quantize_gguf(source, root / "prep", qtype)}
        if qtype in NUMPY_FILE_TYPES:
            runs["numpy"] = lambda: quantize_gguf(source, root / "numpy", qtype, kernels="numpy")
    runs["llama"] = lambda: quantize_with_llama(source, root / "llama", file_type)
    return runs


def bench_files(rounds: int, k_rounds: int, types: list[str]) -> tuple[bool, float]:
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        root = Path(tmp)
        model_dir = make_tiny_model("llama", root / "hf", dims=DIMS)
        source = root / "model-f16.gguf"
        report = convert_model(model_dir, source, "f16")
        print(
            f"model: {report.parameter_count / 1e6:.1f}M parameters, F16 GGUF {source.stat().st_size:,} bytes"
        )
        worst, identical_all = 0.0, True
        for qtype in types:
            times = best_times(
                file_runs(source, root, qtype), k_rounds if qtype in LLAMA_FILE_TYPES else rounds
            )
            llama_sha = sha256_file(root / "llama")
            line = f"file {qtype}: llama_model_quantize {times['llama']:.2f} s, prep {times['prep']:.2f} s"
            ratio = times["prep"] / times["llama"]
            identical = sha256_file(root / "prep") == llama_sha
            if qtype in LLAMA_FILE_TYPES:
                line += f", ratio {ratio:.2f} (the same call), byte-identical: {identical}"
            else:
                worst = max(worst, ratio)
                line += f", ratio {ratio:.2f} (target <= {TARGET_RATIO}), byte-identical: {identical}"
            if "numpy" in times:
                numpy_identical = sha256_file(root / "numpy") == llama_sha
                identical &= numpy_identical
                line += (
                    f"; numpy kernels {times['numpy']:.2f} s, ratio {times['numpy'] / times['llama']:.2f}, "
                    f"byte-identical: {numpy_identical}"
                )
            identical_all &= identical
            print(line, flush=True)
    return identical_all, worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each side (the best counts)")
    parser.add_argument("--k-rounds", type=int, default=1, help="timed runs of each side for K-quants")
    parser.add_argument("--types", default=",".join(FILE_TYPES), help="comma-separated file types")
    parser.add_argument("--no-kernels", action="store_true", help="skip the one-thread kernel comparison")
    args = parser.parse_args()
    types = [t.strip().lower() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in types if t not in NATIVE_FILE_TYPES and t not in LLAMA_FILE_TYPES]
    if unknown:
        parser.error(f"unknown file types: {', '.join(unknown)}")
    kernels_identical = args.no_kernels or bench_kernels(args.rounds)
    files_identical, worst = bench_files(args.rounds, args.k_rounds, types)
    print(f"worst ratio of prep's own writer {worst:.2f} (target <= {TARGET_RATIO})")
    return 0 if kernels_identical and files_identical and worst <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
