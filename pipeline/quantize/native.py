"""Quantizes an F32/F16/BF16 GGUF to F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1.

The output is byte-identical to llama.cpp's llama_model_quantize for the same file type: same tensor
order and types (pipeline.quantize.plan), metadata copied entry by entry with general.quantization_version
and general.file_type moved to the end, split keys dropped, and the blocks made by ggml's own quantizers
when the llama extra is installed, by prep's numpy ones otherwise (pipeline.quantize.kernels). Tensors
stream through in slabs of rows, so memory stays at a few slabs whatever the model size; one worker
thread per core converts slabs while the main thread reads and writes (numpy and ctypes release the GIL
in the heavy loops).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from gguf import GGML_QUANT_VERSION, GGMLQuantizationType

from pipeline.atomic import atomic_writer
from pipeline.errors import InvalidFile, PrepError
from pipeline.quantize.kernels import Kernels, select_kernels
from pipeline.quantize.layout import (
    GgufLayout,
    align,
    encode_header,
    encode_tensor_info,
    encode_u32_entry,
    read_layout,
    tensor_nbytes,
)
from pipeline.quantize.plan import TensorPlan, file_type_for, plan_tensors

Q = GGMLQuantizationType
FILE_TYPE_KEY = "general.file_type"
QUANTIZATION_VERSION_KEY = "general.quantization_version"
_DROPPED_KEYS = {FILE_TYPE_KEY, QUANTIZATION_VERSION_KEY, "split.no", "split.count", "split.tensors.count"}
_SLAB_ELEMENTS = 1024 * 1024
_WORKERS = os.cpu_count() or 1

Progress = Callable[[str, int, int], None]  # (tensor name, index, count)


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    file_type: str
    size_before: int
    size_after: int
    tensor_types: dict[str, str]
    kernels: str  # "ggml" or "numpy"


def quantize_gguf(
    source: Path,
    dest: Path,
    type_name: str,
    progress: Progress | None = None,
    kernels: str | None = None,
) -> QuantizeResult:
    """Writes `dest` (atomically) as the `type_name` quantization of the GGUF at `source`, with the named
    kernels ("ggml" or "numpy"; by default ggml's when the llama extra is installed)."""
    file_type, default_type = file_type_for(type_name)
    converter = select_kernels(kernels)
    layout = read_layout(source)
    plans = plan_tensors(layout, default_type)
    header, offsets = _output_header(layout, plans, int(file_type))
    with atomic_writer(dest) as out, open(source, "rb") as src, ThreadPoolExecutor(_WORKERS) as pool:
        out.write(header)
        for index, plan in enumerate(plans):
            if progress:
                progress(plan.tensor.name, index, len(plans))
            assert out.tell() == len(header) + offsets[index]
            _write_tensor(out, pool, converter, src.fileno(), layout, plan)
            padded = align(out.tell(), layout.alignment)
            out.write(bytes(padded - out.tell()))
    return QuantizeResult(
        path=dest,
        file_type=type_name.lower(),
        size_before=source.stat().st_size,
        size_after=dest.stat().st_size,
        tensor_types={p.tensor.name: p.target.name for p in plans},
        kernels=converter.name,
    )


def _output_header(layout: GgufLayout, plans: list[TensorPlan], file_type: int) -> tuple[bytes, list[int]]:
    entries = [e.raw for e in layout.metadata if e.key not in _DROPPED_KEYS]
    entries.append(encode_u32_entry(QUANTIZATION_VERSION_KEY, GGML_QUANT_VERSION))
    entries.append(encode_u32_entry(FILE_TYPE_KEY, file_type))
    offsets, infos, offset = [], [], 0
    for plan in plans:
        offsets.append(offset)
        # ggml writes a tensor's dimensions without trailing ones (ggml_n_dims).
        shape = plan.tensor.shape[: plan.tensor.n_dims]
        infos.append(encode_tensor_info(plan.tensor.name, shape, plan.target, offset))
        offset = align(offset + tensor_nbytes(plan.tensor.shape, plan.target), layout.alignment)
    return encode_header(len(plans), entries, infos, layout.alignment), offsets


def _write_tensor(
    out: BinaryIO,
    pool: ThreadPoolExecutor,
    converter: Kernels,
    source_fd: int,
    layout: GgufLayout,
    plan: TensorPlan,
) -> None:
    """Reads the tensor slab by slab (plain reads, so memory stays at a few slabs however large the
    model) and writes it converted, keeping at most one slab per worker in flight."""
    tensor = plan.tensor
    dtype = np.dtype(_numpy_dtype(tensor.ggml_type))
    row_bytes = tensor.shape[0] * dtype.itemsize
    rows_per_slab = max(1, _SLAB_ELEMENTS // tensor.shape[0])
    pending: deque[Future[np.ndarray]] = deque()
    position, end = layout.data_offset + tensor.offset, layout.data_offset + tensor.offset + tensor.nbytes
    while position < end:
        size = min(rows_per_slab * row_bytes, end - position)
        raw = os.pread(source_fd, size, position)
        if len(raw) != size:
            raise InvalidFile(
                f"{layout.path}: tensor {tensor.name} is cut short at byte {position + len(raw)}"
            )
        position += size
        if not plan.converts:
            out.write(raw)
            continue
        slab = np.frombuffer(raw, dtype=dtype).reshape(-1, tensor.shape[0])
        pending.append(pool.submit(converter.convert, slab, tensor.ggml_type, plan.target))
        if len(pending) > _WORKERS:
            out.write(_slab_result(pending.popleft(), layout.path, tensor.name))
    while pending:
        out.write(_slab_result(pending.popleft(), layout.path, tensor.name))


def _slab_result(future: Future[np.ndarray], path: Path, tensor_name: str) -> np.ndarray:
    try:
        return future.result()
    except PrepError as err:
        raise type(err)(f"{path}: tensor {tensor_name}: {err.message}", hint=err.hint) from err


def _numpy_dtype(ggml_type: GGMLQuantizationType) -> type[np.generic]:
    if ggml_type == Q.F32:
        return np.float32
    if ggml_type == Q.F16:
        return np.float16
    if ggml_type == Q.BF16:
        return np.uint16
    raise PrepError(f"cannot read {ggml_type.name} tensors as floats")
