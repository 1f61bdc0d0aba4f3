"""HF safetensors checkpoint -> GGUF, streaming one tensor at a time (no torch).

The writer first gets every tensor's name, shape and type (so the header and data offsets are final), then
the metadata, then the tensor data one tensor after the other, read from the checkpoint as it is written.
Output goes to a temp file next to `out`, fsync'd and renamed into place.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import gguf
import numpy as np

from pipeline.atomic import atomic_path
from pipeline.convert.architectures import HfArchitecture, architecture_for
from pipeline.convert.checkpoint import HfCheckpoint, as_float
from pipeline.errors import PrepError, UsageError

Q = gguf.GGMLQuantizationType
OUTTYPES: dict[str, tuple[gguf.LlamaFileType, gguf.GGMLQuantizationType]] = {
    "f32": (gguf.LlamaFileType.ALL_F32, Q.F32),
    "f16": (gguf.LlamaFileType.MOSTLY_F16, Q.F16),
    "bf16": (gguf.LlamaFileType.MOSTLY_BF16, Q.BF16),
    "q8_0": (gguf.LlamaFileType.MOSTLY_Q8_0, Q.Q8_0),
}
# Tensors llama.cpp always keeps in F32 (those of our architectures).
F32_TENSORS = (gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES)
# Rows converted at a time, in F32 bytes: bounds memory whatever the tensor size.
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class PlannedTensor:
    source: str  # name in the checkpoint
    name: str  # name in the GGUF file
    shape: tuple[int, ...]  # numpy order, after the architecture's transform
    qtype: gguf.GGMLQuantizationType


@dataclass(frozen=True)
class ConvertReport:
    out: Path
    architecture: str  # GGUF architecture name, e.g. "qwen2"
    hf_architecture: str
    outtype: str
    tensor_count: int
    parameter_count: int
    file_size: int
    seconds: float


def convert_model(model_dir: Path, out: Path, outtype: str) -> ConvertReport:
    """Converts the HF checkpoint in `model_dir` to a GGUF file `out` of type f32, f16, bf16 or q8_0."""
    started = time.monotonic()
    if outtype not in OUTTYPES:
        raise UsageError(
            f"output type {outtype!r} is not supported", hint=f"use one of {', '.join(OUTTYPES)}"
        )
    model_dir, out = Path(model_dir), Path(out)
    file_type, default_qtype = OUTTYPES[outtype]
    checkpoint = HfCheckpoint(model_dir)
    arch = architecture_for(checkpoint.config, model_dir)
    plan = plan_tensors(checkpoint, arch, default_qtype)

    writer = gguf.GGUFWriter(path=None, arch=arch.arch_name)
    for tensor in plan:
        _add_tensor_info(writer, tensor)
    parameter_count = writer.get_total_parameter_count()[0]
    _write_metadata(writer, arch, model_dir, file_type, parameter_count)

    with atomic_path(out) as tmp:
        try:
            writer.write_header_to_file(path=tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            assert writer.fout is not None
            fout = writer.fout[0]
            for tensor in plan:
                writer.write_padding(fout, fout.tell())
                written = _write_tensor_data(fout, checkpoint, arch, tensor)
                writer.write_padding(fout, written)
        finally:
            writer.close()
    return ConvertReport(
        out=out,
        architecture=arch.arch_name,
        hf_architecture=arch.hf_name,
        outtype=outtype,
        tensor_count=len(plan),
        parameter_count=parameter_count,
        file_size=out.stat().st_size,
        seconds=time.monotonic() - started,
    )


def plan_tensors(
    checkpoint: HfCheckpoint, arch: HfArchitecture, default_qtype: gguf.GGMLQuantizationType
) -> list[PlannedTensor]:
    plan: list[PlannedTensor] = []
    for source, ref in checkpoint.tensors.items():
        if arch.skip(source):
            continue
        name = arch.gguf_name(source)
        shape = arch.transformed_shape(source, ref.entry.shape)
        plan.append(PlannedTensor(source, name, shape, _tensor_qtype(name, shape, default_qtype)))
    return plan


def _tensor_qtype(
    name: str, shape: tuple[int, ...], default_qtype: gguf.GGMLQuantizationType
) -> gguf.GGMLQuantizationType:
    # llama.cpp's rules: 1-D tensors, norms, biases and a few named tensors stay F32.
    if len(shape) <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return Q.F32
    if any(name == gguf.TENSOR_NAMES[key] + ".weight" for key in F32_TENSORS):
        return Q.F32
    block_size, _ = gguf.GGML_QUANT_SIZES[default_qtype]
    if shape[-1] % block_size != 0:
        return Q.F16  # llama.cpp falls back to F16 when rows do not fill whole blocks
    return default_qtype


def _tensor_nbytes(tensor: PlannedTensor) -> int:
    block_size, type_size = gguf.GGML_QUANT_SIZES[tensor.qtype]
    return math.prod(tensor.shape) // block_size * type_size


def _add_tensor_info(writer: gguf.GGUFWriter, tensor: PlannedTensor) -> None:
    nbytes = _tensor_nbytes(tensor)
    if tensor.qtype in (Q.F32, Q.F16):
        dtype = np.dtype(np.float32 if tensor.qtype == Q.F32 else np.float16)
        writer.add_tensor_info(tensor.name, tensor.shape, dtype, nbytes)
        return
    byte_shape = gguf.quant_shape_to_byte_shape(tensor.shape, tensor.qtype)
    writer.add_tensor_info(tensor.name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=tensor.qtype)


def _write_metadata(
    writer: gguf.GGUFWriter,
    arch: HfArchitecture,
    model_dir: Path,
    file_type: gguf.LlamaFileType,
    parameter_count: int,
) -> None:
    # Same order as llama.cpp: type, general.* from the model card and config, hyperparameters,
    # quantization version, tokenizer.
    writer.add_type(gguf.GGUFType.MODEL)
    metadata = gguf.Metadata.load(None, model_dir, None, parameter_count)
    if metadata.name is None:
        metadata.name = model_dir.name
    if metadata.size_label is None and parameter_count > 0:
        metadata.size_label = gguf.size_label(*writer.get_total_parameter_count())
    metadata.set_gguf_meta_model(writer)
    arch.write_hparams(writer, file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    arch.write_vocab(writer)


def _write_tensor_data(
    fout: BinaryIO, checkpoint: HfCheckpoint, arch: HfArchitecture, tensor: PlannedTensor
) -> int:
    """Streams one tensor in row chunks: memory stays at one chunk plus the mapped source pages."""
    data = checkpoint.view(tensor.source)
    n_rows = tensor.shape[0] if tensor.shape else 1
    row_elems = math.prod(tensor.shape[1:]) if len(tensor.shape) > 1 else 1
    rows_per_chunk = max(1, CHUNK_BYTES // (4 * row_elems))
    written = 0
    for start in range(0, n_rows, rows_per_chunk):
        rows = arch.rows(tensor.source, data, start, min(start + rows_per_chunk, n_rows))
        chunk = np.ascontiguousarray(gguf.quants.quantize(as_float(rows), tensor.qtype))
        chunk.tofile(fout)
        written += chunk.nbytes
    if written != _tensor_nbytes(tensor):
        raise PrepError(f"tensor {tensor.source!r}: wrote {written} bytes, planned {_tensor_nbytes(tensor)}")
    return written
