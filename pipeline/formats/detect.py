"""Detect a model file's format by its content, validate it, and summarise it (`prep inspect`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import InvalidFile
from pipeline.formats.gguf import ArrayValue, read_gguf
from pipeline.formats.llama2c import (
    looks_like_llama2c_model,
    looks_like_llama2c_tokenizer,
    read_llama2c_model,
    read_llama2c_tokenizer,
)
from pipeline.formats.names import (
    DESCRIPTIONS,
    GGUF,
    LLAMA2C_MODEL,
    LLAMA2C_TOKENIZER,
    SAFETENSORS,
    TOKENIZER_JSON,
)
from pipeline.formats.safetensors import looks_like_safetensors, read_safetensors_header
from pipeline.formats.tokenizer_json import looks_like_tokenizer_json, read_tokenizer_json

PREFIX_BYTES = 65536


@dataclass(frozen=True)
class InspectReport:
    path: Path
    format: str
    file_size: int
    details: dict[str, Any]
    lines: tuple[str, ...]  # human summary


def detect_format(path: Path) -> str | None:
    """The format the file's bytes look like, whatever its name says."""
    with open(path, "rb") as f:
        prefix = f.read(PREFIX_BYTES)
    if prefix.startswith(b"GGUF"):
        return GGUF
    if looks_like_safetensors(prefix):
        return SAFETENSORS
    if looks_like_tokenizer_json(prefix):
        return TOKENIZER_JSON
    if looks_like_llama2c_model(prefix):
        return LLAMA2C_MODEL
    if looks_like_llama2c_tokenizer(prefix):
        return LLAMA2C_TOKENIZER
    return None


def format_from_name(path: Path) -> str | None:
    """The format the file name suggests, if any."""
    name = path.name.lower()
    if name.endswith(".gguf"):
        return GGUF
    if name.endswith(".safetensors"):
        return SAFETENSORS
    if name.endswith("tokenizer.json"):
        return TOKENIZER_JSON
    if name.endswith(".bin") and "tokenizer" in name:
        return LLAMA2C_TOKENIZER
    return None


def inspect_file(path: Path, expected: str | None = None) -> InspectReport:
    """Validates the file in the format its content shows; `expected` (or its name) must agree."""
    path = Path(path)
    if not path.is_file():
        raise InvalidFile(
            f"{path}: " + ("a folder; give one model file in it" if path.is_dir() else "no such file"),
            hint="prep inspect reads GGUF, safetensors, llama2.c model or tokenizer and tokenizer.json files",
        )
    detected = detect_format(path)
    claimed = expected or format_from_name(path)
    if detected is None:
        raise InvalidFile(
            f"{path}: not a recognised model file "
            "(GGUF, safetensors, llama2.c model or tokenizer, tokenizer.json)"
        )
    if claimed is not None and claimed != detected:
        raise InvalidFile(
            f"{path}: named or expected as {DESCRIPTIONS[claimed]}, but its content looks like "
            f"{DESCRIPTIONS[detected]}",
            hint="check that the right file was downloaded or renamed",
        )
    return _INSPECTORS[detected](path)


def _inspect_gguf(path: Path) -> InspectReport:
    info = read_gguf(path)
    metadata = {k: _plain(v) for k, v in info.metadata.items()}
    details = {
        "version": info.version,
        "architecture": info.architecture,
        "tensor_count": len(info.tensors),
        "tensor_types": info.type_counts(),
        "alignment": info.alignment,
        "data_start": info.data_start,
        "metadata": metadata,
    }
    lines = [
        f"GGUF v{info.version}, architecture {info.architecture}, {len(info.tensors)} tensors, "
        f"{info.file_size} bytes (data from byte {info.data_start})",
        "tensor types: " + ", ".join(f"{t} x{n}" for t, n in sorted(info.type_counts().items())),
        *(f"  {key} = {_short(value)}" for key, value in info.metadata.items()),
    ]
    return InspectReport(path, GGUF, info.file_size, details, tuple(lines))


def _inspect_safetensors(path: Path) -> InspectReport:
    header = read_safetensors_header(path)
    dtypes: dict[str, int] = {}
    for tensor in header.tensors:
        dtypes[tensor.dtype] = dtypes.get(tensor.dtype, 0) + 1
    details = {
        "header_bytes": header.header_bytes,
        "tensor_count": len(header.tensors),
        "dtypes": dtypes,
        "metadata": header.metadata,
        "data_bytes": header.data_bytes,
    }
    lines = [
        f"safetensors, {len(header.tensors)} tensors, header {header.header_bytes} bytes, "
        f"data {header.data_bytes} bytes",
        "dtypes: " + ", ".join(f"{d} x{n}" for d, n in sorted(dtypes.items())),
    ]
    return InspectReport(path, SAFETENSORS, header.file_size, details, tuple(lines))


def _inspect_llama2c_model(path: Path) -> InspectReport:
    info = read_llama2c_model(path)
    details = {k: v for k, v in asdict(info).items() if k not in ("path", "file_size")}
    classifier = "shared" if info.shared_classifier else "unshared"
    lines = [
        f"llama2.c model: dim {info.dim}, hidden_dim {info.hidden_dim}, {info.n_layers} layers, "
        f"{info.n_heads} heads ({info.n_kv_heads} kv), vocab {info.vocab_size}, seq_len {info.seq_len}, "
        f"{classifier} classifier, {info.file_size} bytes as the header expects"
    ]
    return InspectReport(path, LLAMA2C_MODEL, info.file_size, details, tuple(lines))


def _inspect_llama2c_tokenizer(path: Path) -> InspectReport:
    info = read_llama2c_tokenizer(path)
    details = {"max_token_length": info.max_token_length, "token_count": info.token_count}
    lines = [f"llama2.c tokenizer: {info.token_count} tokens, max token length {info.max_token_length}"]
    return InspectReport(path, LLAMA2C_TOKENIZER, info.file_size, details, tuple(lines))


def _inspect_tokenizer_json(path: Path) -> InspectReport:
    info = read_tokenizer_json(path)
    details = {
        "model_type": info.model_type,
        "vocab_size": info.vocab_size,
        "added_tokens": info.added_tokens,
    }
    lines = [f"tokenizer.json: {info.model_type} model, {info.vocab_size} tokens ({info.added_tokens} added)"]
    return InspectReport(path, TOKENIZER_JSON, info.file_size, details, tuple(lines))


_INSPECTORS = {
    GGUF: _inspect_gguf,
    SAFETENSORS: _inspect_safetensors,
    LLAMA2C_MODEL: _inspect_llama2c_model,
    LLAMA2C_TOKENIZER: _inspect_llama2c_tokenizer,
    TOKENIZER_JSON: _inspect_tokenizer_json,
}


def _plain(value: Any) -> Any:
    if isinstance(value, ArrayValue):
        return {"array": value.element_type, "length": value.length}
    return value


def _short(value: Any) -> str:
    if isinstance(value, ArrayValue):
        return f"[{value.length} x {value.element_type}]"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
