"""safetensors: header parsing and validation without loading tensor data.

Layout: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]},
"__metadata__": {str: str}}, then the data; offsets are relative to the end of the header.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import InvalidFile

DTYPE_SIZES: dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}
# A header larger than this is not a safetensors header (the format's own readers cap it at 100 MB).
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class SafetensorsTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute file offset of the first byte
    end: int  # absolute file offset one past the last byte

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    header_bytes: int
    data_start: int
    file_size: int
    tensors: tuple[SafetensorsTensor, ...]  # in header order
    metadata: dict[str, str]

    @property
    def data_bytes(self) -> int:
        return self.file_size - self.data_start


def looks_like_safetensors(prefix: bytes) -> bool:
    """True if the first bytes are a plausible safetensors header start (length, then '{')."""
    if len(prefix) < 9:
        return False
    (length,) = struct.unpack("<Q", prefix[:8])
    return 2 <= length <= MAX_HEADER_BYTES and prefix[8:9] == b"{"


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Parses and checks the header: JSON, dtypes, shapes, offsets contiguous and inside the file."""
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        length = header_length(path, f.read(8), file_size)
        raw = f.read(length)
    return parse_safetensors_header(path, raw, file_size)


def header_length(path: Path, prefix: bytes, file_size: int) -> int:
    """The JSON header length from the first 8 bytes, checked against the file size."""
    if len(prefix) < 8:
        raise InvalidFile(
            f"{path}: {file_size} bytes is too short for a safetensors file (needs an 8-byte header)"
        )
    (length,) = struct.unpack("<Q", prefix[:8])
    if length > MAX_HEADER_BYTES or 8 + length > file_size:
        raise InvalidFile(
            f"{path}: safetensors header length {length} runs past the end of the {file_size}-byte file",
            hint="the file is truncated or not safetensors; download it again",
        )
    return length


def parse_safetensors_header(path: Path, raw: bytes, file_size: int) -> SafetensorsHeader:
    """Parses and checks the JSON header `raw` (the bytes after the length) of a `file_size`-byte file."""
    length = len(raw)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InvalidFile(f"{path}: safetensors header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise InvalidFile(f"{path}: safetensors header is a JSON {type(header).__name__}, expected an object")
    data_start = 8 + length
    metadata = header.pop("__metadata__", None) or {}
    tensors = tuple(_parse_entry(path, name, entry, data_start) for name, entry in header.items())
    _check_layout(path, tensors, data_start, file_size)
    return SafetensorsHeader(path, length, data_start, file_size, tensors, dict(metadata))


def _parse_entry(path: Path, name: str, entry: object, data_start: int) -> SafetensorsTensor:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise InvalidFile(f"{path}: tensor {name!r} needs dtype, shape and data_offsets, got {entry!r}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise InvalidFile(
            f"{path}: tensor {name!r} has unknown dtype {dtype!r}; known: {', '.join(DTYPE_SIZES)}"
        )
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise InvalidFile(f"{path}: tensor {name!r} has a bad shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise InvalidFile(f"{path}: tensor {name!r} has bad data_offsets {offsets!r}")
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if offsets[1] - offsets[0] != expected:
        raise InvalidFile(
            f"{path}: tensor {name!r} ({dtype} {shape}) should take {expected} bytes, "
            f"its data_offsets span {offsets[1] - offsets[0]}"
        )
    return SafetensorsTensor(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])


def _check_layout(
    path: Path, tensors: tuple[SafetensorsTensor, ...], data_start: int, file_size: int
) -> None:
    position = data_start
    for tensor in sorted(tensors, key=lambda t: (t.start, t.end)):
        if tensor.start != position:
            what = "overlaps the previous tensor" if tensor.start < position else "leaves a gap before it"
            raise InvalidFile(
                f"{path}: tensor {tensor.name!r} at byte {tensor.start} {what} (expected {position})"
            )
        position = tensor.end
    if position > file_size:
        last = max(tensors, key=lambda t: t.end)
        raise InvalidFile(
            f"{path}: tensor {last.name!r} ends at byte {last.end} but the file has {file_size} bytes "
            f"({last.end - file_size} missing)",
            hint="the file is truncated; download it again",
        )
    if position < file_size:
        raise InvalidFile(f"{path}: {file_size - position} bytes of trailing data after the last tensor")
