"""llama2.c files: `model.bin` (7 int32 header + float32 weights) and `tokenizer.bin`.

model.bin: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative = unshared classifier),
seq_len; then the weights in run.c order, including the legacy freq_cis tables. tokenizer.bin: int32
max_token_length, then per token a float32 score, an int32 length and the bytes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InvalidFile

HEADER = struct.Struct("<7i")
HEADER_FIELDS = ("dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len")
# Bounds that no real llama2.c model exceeds; outside them the bytes are not a llama2.c header.
MAX_DIM = 1 << 16
MAX_LAYERS = 1024
MAX_VOCAB = 1 << 22
MAX_SEQ_LEN = 1 << 20
MAX_TOKEN_LENGTH = 4096


@dataclass(frozen=True)
class Llama2cModelInfo:
    path: Path
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool
    expected_size: int
    file_size: int


@dataclass(frozen=True)
class Llama2cTokenizerInfo:
    path: Path
    max_token_length: int
    token_count: int
    file_size: int


def header_problem(values: tuple[int, ...]) -> str | None:
    """Why these 7 ints are not a plausible llama2.c header, or None if they are."""
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = values
    if not 0 < dim <= MAX_DIM or not 0 < hidden_dim <= 8 * MAX_DIM:
        return f"dim {dim} / hidden_dim {hidden_dim} out of range"
    if not 0 < n_layers <= MAX_LAYERS:
        return f"n_layers {n_layers} out of range"
    if not 0 < n_heads <= dim or dim % n_heads or (dim // n_heads) % 2:
        return f"n_heads {n_heads} does not split dim {dim} into even head sizes"
    if not 0 < n_kv_heads <= n_heads or n_heads % n_kv_heads:
        return f"n_kv_heads {n_kv_heads} does not divide n_heads {n_heads}"
    if not 0 < abs(vocab_size) <= MAX_VOCAB:
        return f"vocab_size {vocab_size} out of range"
    if not 0 < seq_len <= MAX_SEQ_LEN:
        return f"seq_len {seq_len} out of range"
    return None


def expected_model_size(values: tuple[int, ...]) -> int:
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = values
    head_size = dim // n_heads
    floats = (
        abs(vocab_size) * dim  # token embedding
        + n_layers * dim * 2  # rms_att, rms_ffn
        + n_layers * dim * dim * 2  # wq, wo
        + n_layers * dim * n_kv_heads * head_size * 2  # wk, wv
        + n_layers * hidden_dim * dim * 3  # w1, w2, w3
        + dim  # rms_final
        + seq_len * head_size  # freq_cis_real + freq_cis_imag
        + (abs(vocab_size) * dim if vocab_size < 0 else 0)  # unshared classifier
    )
    return HEADER.size + 4 * floats


def read_llama2c_model(path: Path) -> Llama2cModelInfo:
    """Checks the header and that the file holds exactly the weights the header describes."""
    path = Path(path)
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(HEADER.size)
    if len(raw) < HEADER.size:
        raise InvalidFile(
            f"{path}: {file_size} bytes is too short for a llama2.c model header ({HEADER.size})"
        )
    values = HEADER.unpack(raw)
    if (problem := header_problem(values)) is not None:
        raise InvalidFile(f"{path}: not a llama2.c model.bin header: {problem}")
    expected = expected_model_size(values)
    if file_size != expected:
        header = ", ".join(f"{k}={v}" for k, v in zip(HEADER_FIELDS, values, strict=True))
        problem = (
            f"truncated: {expected - file_size} bytes missing"
            if file_size < expected
            else f"{file_size - expected} unexpected trailing bytes"
        )
        raise InvalidFile(
            f"{path}: header ({header}) describes {expected} bytes, the file has {file_size}: {problem}",
            hint="download the model again" if file_size < expected else None,
        )
    dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len = values
    return Llama2cModelInfo(
        path,
        dim,
        hidden_dim,
        n_layers,
        n_heads,
        n_kv_heads,
        abs(vocab_size),
        seq_len,
        vocab_size > 0,
        expected,
        file_size,
    )


def read_llama2c_tokenizer(path: Path, vocab_size: int | None = None) -> Llama2cTokenizerInfo:
    """Walks every token record; with `vocab_size` (from the model) also checks the token count."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 4:
        raise InvalidFile(f"{path}: {len(data)} bytes is too short for a llama2.c tokenizer")
    (max_token_length,) = struct.unpack_from("<i", data)
    if not 0 < max_token_length <= MAX_TOKEN_LENGTH:
        raise InvalidFile(
            f"{path}: max_token_length {max_token_length} out of range: not a llama2.c tokenizer"
        )
    pos, index = 4, 0
    while pos < len(data) and (vocab_size is None or index < vocab_size):
        if pos + 8 > len(data):
            raise InvalidFile(
                f"{path}: token {index} is truncated: its score and length need bytes {pos}-{pos + 8}"
            )
        (length,) = struct.unpack_from("<i", data, pos + 4)
        if not 0 <= length <= max_token_length:
            raise InvalidFile(
                f"{path}: token {index} at byte {pos} has length {length}, outside 0..{max_token_length}"
            )
        if pos + 8 + length > len(data):
            missing = pos + 8 + length - len(data)
            raise InvalidFile(
                f"{path}: token {index} is truncated: {missing} of its {length} bytes are missing"
            )
        pos += 8 + length
        index += 1
    if vocab_size is not None and index < vocab_size:
        raise InvalidFile(f"{path}: holds {index} tokens, the model's vocab_size is {vocab_size}")
    if pos != len(data):
        raise InvalidFile(f"{path}: {len(data) - pos} bytes after token {index - 1}, the model's last")
    return Llama2cTokenizerInfo(path, max_token_length, index, len(data))


def looks_like_llama2c_model(prefix: bytes) -> bool:
    return len(prefix) >= HEADER.size and header_problem(HEADER.unpack_from(prefix)) is None


def looks_like_llama2c_tokenizer(prefix: bytes) -> bool:
    """First records parse: plausible max length, then (score, length <= max, bytes) a few times."""
    if len(prefix) < 4:
        return False
    (max_token_length,) = struct.unpack_from("<i", prefix)
    if not 0 < max_token_length <= MAX_TOKEN_LENGTH:
        return False
    pos = 4
    for _ in range(3):
        if pos + 8 > len(prefix):
            return pos > 4 and pos == len(prefix)
        (length,) = struct.unpack_from("<i", prefix, pos + 4)
        if not 0 <= length <= max_token_length:
            return False
        pos += 8 + length
    return True
