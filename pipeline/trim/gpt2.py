"""Trims a GPT-2 checkpoint to exactly what the GPT-2 canister's candle loader reads.

The loader (decide-ai examples/gpt2) reads, under the `transformer.` prefix, wte, wpe, ln_f and per layer
ln_1, ln_2, attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj (weight and bias each), as F32 whatever the
stored dtype. The tied lm_head and the attn.bias / attn.masked_bias buffers are never read, so dropping
them and storing f16 halves the upload. The vocabulary is kept whole (ids past 50256 are used).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.atomic import atomic_writer
from pipeline.errors import InvalidFile, UsageError
from pipeline.formats.config_json import PREFIX, Gpt2Config, read_gpt2_config
from pipeline.formats.safetensors import SafetensorsHeader, SafetensorsTensor, read_safetensors_header

TRIM_DTYPES = ("f32", "f16")
SAFETENSORS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TOKENIZER_NAME = "tokenizer.json"
_LAYER_PARTS = ("ln_1", "ln_2", "attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_NUMPY_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F64": np.dtype("<f8"),
}
_OUT_DTYPES = {"f32": ("F32", np.dtype("<f4")), "f16": ("F16", np.dtype("<f2"))}
_COPY_BUFFER = 8 * 1024 * 1024


@dataclass(frozen=True)
class TrimResult:
    out_dir: Path
    safetensors: Path
    config: Path
    tokenizer: Path
    size_before: int
    size_after: int
    tensors_kept: int
    tensors_dropped: tuple[str, ...]
    dtype: str


def trim_gpt2(model_dir: Path, out_dir: Path, dtype: str | None = "f16") -> TrimResult:
    """Writes out_dir/{model.safetensors, config.json, tokenizer.json} for the GPT-2 canister."""
    if dtype is not None and dtype not in TRIM_DTYPES:
        raise UsageError(
            f"trim dtype {dtype!r} is not supported", hint=f"use one of {', '.join(TRIM_DTYPES)}"
        )
    config_path, weights_path, tokenizer_path = (
        model_dir / n for n in (CONFIG_NAME, SAFETENSORS_NAME, TOKENIZER_NAME)
    )
    for path in (config_path, weights_path, tokenizer_path):
        if not path.is_file():
            raise InvalidFile(
                f"{path} is missing",
                hint="a GPT-2 model directory needs config.json, model.safetensors and tokenizer.json",
            )
    config = read_gpt2_config(config_path)
    header = read_safetensors_header(weights_path)
    selected = _select_tensors(header, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    out_weights = out_dir / SAFETENSORS_NAME
    _write_safetensors(out_weights, weights_path, selected, dtype)
    _copy_atomic(config_path, out_dir / CONFIG_NAME)
    _copy_atomic(tokenizer_path, out_dir / TOKENIZER_NAME)
    kept_sources = {source.name for source in selected.values()}
    return TrimResult(
        out_dir=out_dir,
        safetensors=out_weights,
        config=out_dir / CONFIG_NAME,
        tokenizer=out_dir / TOKENIZER_NAME,
        size_before=header.file_size,
        size_after=out_weights.stat().st_size,
        tensors_kept=len(selected),
        tensors_dropped=tuple(sorted(t.name for t in header.tensors if t.name not in kept_sources)),
        dtype=dtype or "as stored",
    )


def _select_tensors(header: SafetensorsHeader, config: Gpt2Config) -> dict[str, SafetensorsTensor]:
    """Maps each loader tensor name to the checkpoint tensor that provides it, checking shapes and dtypes."""
    by_name = {t.name: t for t in header.tensors}
    selected: dict[str, SafetensorsTensor] = {}
    for name, shape in config.expected_shapes().items():
        tensor = by_name.get(name) or by_name.get(name[len(PREFIX) :])
        if tensor is None:
            raise InvalidFile(
                f"{header.path}: tensor {name!r} is missing (the GPT-2 canister's loader needs it)",
                hint="is this a GPT-2 checkpoint matching config.json (n_layer, n_embd)?",
            )
        if tensor.shape != shape:
            raise InvalidFile(
                f"{header.path}: tensor {tensor.name!r} has shape {list(tensor.shape)}, the loader needs "
                f"{list(shape)} (from config.json)"
            )
        if tensor.dtype not in _NUMPY_DTYPES:
            raise InvalidFile(
                f"{header.path}: tensor {tensor.name!r} has dtype {tensor.dtype}, expected a float type"
            )
        selected[name] = tensor
    return selected


def _write_safetensors(
    out: Path, source: Path, selected: dict[str, SafetensorsTensor], dtype: str | None
) -> None:
    names = sorted(selected)
    out_types = {name: _out_type(selected[name], dtype) for name in names}
    entries: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in names:
        size = math.prod(selected[name].shape) * out_types[name][1].itemsize
        entries[name] = {
            "dtype": out_types[name][0],
            "shape": list(selected[name].shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format's writers pad the header to 8 bytes with spaces
    with atomic_writer(out) as handle, open(source, "rb") as src:
        handle.write(struct.pack("<Q", len(header)) + header)
        for name in names:  # one tensor in memory at a time
            tensor = selected[name]
            values = _read_values(src.fileno(), tensor)
            handle.write(values.astype(out_types[name][1], copy=False).tobytes())


def _out_type(tensor: SafetensorsTensor, dtype: str | None) -> tuple[str, np.dtype]:
    if dtype is not None:
        return _OUT_DTYPES[dtype]
    if tensor.dtype in ("F32", "F16"):
        return tensor.dtype, _NUMPY_DTYPES[tensor.dtype]
    return _OUT_DTYPES["f32"]


def _read_values(source_fd: int, tensor: SafetensorsTensor) -> np.ndarray:
    raw = np.frombuffer(os.pread(source_fd, tensor.nbytes, tensor.start), dtype=_NUMPY_DTYPES[tensor.dtype])
    if tensor.dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw


def _copy_atomic(source: Path, dest: Path) -> None:
    with atomic_writer(dest) as out, open(source, "rb") as src:
        shutil.copyfileobj(src, out, _COPY_BUFFER)
