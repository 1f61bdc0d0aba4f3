"""GGUF: a fast header reader and validator (gguf's GGUFReader is slow on large vocabularies).

Layout: magic "GGUF", u32 version, u64 tensor count, u64 metadata count, metadata (key, u32 type, value),
tensor infos (name, u32 n_dims, u64 dims, u32 type, u64 offset), padding to the alignment, tensor data.
Array values are walked but not kept: only their element type and length are reported.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from pipeline.errors import InvalidFile

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
_SCALARS: dict[int, struct.Struct] = {
    gguf.GGUFValueType.UINT8: struct.Struct("<B"),
    gguf.GGUFValueType.INT8: struct.Struct("<b"),
    gguf.GGUFValueType.UINT16: struct.Struct("<H"),
    gguf.GGUFValueType.INT16: struct.Struct("<h"),
    gguf.GGUFValueType.UINT32: struct.Struct("<I"),
    gguf.GGUFValueType.INT32: struct.Struct("<i"),
    gguf.GGUFValueType.FLOAT32: struct.Struct("<f"),
    gguf.GGUFValueType.BOOL: struct.Struct("<?"),
    gguf.GGUFValueType.UINT64: struct.Struct("<Q"),
    gguf.GGUFValueType.INT64: struct.Struct("<q"),
    gguf.GGUFValueType.FLOAT64: struct.Struct("<d"),
}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class ArrayValue:
    """A metadata array, summarised."""

    element_type: str
    length: int


@dataclass(frozen=True)
class GgufTensor:
    name: str
    shape: tuple[int, ...]  # ggml order (ne0 first), as llama.cpp prints it
    type: str
    offset: int  # relative to the data section
    nbytes: int


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    version: int
    file_size: int
    alignment: int
    data_start: int
    metadata: dict[str, Any]
    tensors: tuple[GgufTensor, ...] = field(repr=False)

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def type_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for tensor in self.tensors:
            counts[tensor.type] = counts.get(tensor.type, 0) + 1
        return counts


class HeaderIncomplete(InvalidFile):
    """The bytes given end inside the header: `needed` is how many bytes would let parsing go further."""

    def __init__(self, message: str, *, needed: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.needed = needed


class _Cursor:
    def __init__(self, path: Path, buffer: mmap.mmap | bytes) -> None:
        self.path = path
        self.buffer = buffer
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        end = self.pos + n
        if end > len(self.buffer):
            raise HeaderIncomplete(
                f"{self.path}: truncated in the header while reading {what} "
                f"(needs byte {end}, file has {len(self.buffer)})",
                needed=end,
                hint="the file is incomplete; download or convert it again",
            )
        view = memoryview(self.buffer)[self.pos : end]
        self.pos = end
        return view

    def unpack(self, fmt: struct.Struct, what: str) -> Any:
        return fmt.unpack(self.take(fmt.size, what))[0]

    def string(self, what: str) -> str:
        length = self.unpack(_U64, what)
        raw = self.take(length, what)
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as err:
            raise InvalidFile(f"{self.path}: {what} is not UTF-8 at byte {self.pos - length}") from err

    def skip_strings(self, count: int, what: str) -> None:
        buffer, pos, size = self.buffer, self.pos, len(self.buffer)
        for index in range(count):
            if pos + 8 > size:
                self.pos = pos
                self.take(8, f"{what}[{index}]")
            (length,) = _U64.unpack_from(buffer, pos)
            pos += 8 + length
            if pos > size:
                self.pos = pos - length
                self.take(length, f"{what}[{index}]")
        self.pos = pos


def read_gguf(path: Path) -> GgufInfo:
    """Parses the header and checks every tensor's type, shape, alignment and bytes against the file."""
    path = Path(path)
    file_size = os.path.getsize(path)
    with open(path, "rb") as f:
        if file_size == 0:
            raise InvalidFile(f"{path}: empty file, not GGUF")
        buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            return _parse(path, buffer, file_size)
        finally:
            # An error raised mid-parse keeps views of the map alive in its traceback's frames; the map
            # is then unmapped when they are freed (closing now would raise BufferError over the error).
            with contextlib.suppress(BufferError):
                buffer.close()


def parse_gguf_header(path: Path, prefix: bytes, file_size: int) -> GgufInfo:
    """Parses a header from the first bytes of a file of `file_size` bytes (e.g. fetched by a range request).

    Raises HeaderIncomplete (with the byte count it needs) when `prefix` ends inside the header.
    """
    return _parse(path, prefix, file_size)


def _parse(path: Path, buffer: mmap.mmap | bytes, file_size: int) -> GgufInfo:
    cursor = _Cursor(path, buffer)
    magic = bytes(cursor.take(4, "the magic"))
    if magic != MAGIC:
        raise InvalidFile(f"{path}: magic is {magic!r}, not {MAGIC!r}: not a GGUF file")
    version = cursor.unpack(_U32, "the version")
    if version not in SUPPORTED_VERSIONS:
        raise InvalidFile(f"{path}: GGUF version {version}; supported: {SUPPORTED_VERSIONS}")
    tensor_count = cursor.unpack(_U64, "the tensor count")
    kv_count = cursor.unpack(_U64, "the metadata count")
    metadata: dict[str, Any] = {}
    for index in range(kv_count):
        key = cursor.string(f"metadata key #{index}")
        metadata[key] = _read_value(cursor, key)
    infos = [_read_tensor_info(cursor, index) for index in range(tensor_count)]
    names = [info[0] for info in infos]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise InvalidFile(f"{path}: tensor name {duplicate!r} appears more than once")
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise InvalidFile(f"{path}: general.alignment {alignment!r} is not a power of two")
    data_start = -(-cursor.pos // alignment) * alignment
    tensors = tuple(_check_tensor(path, info, alignment) for info in infos)
    _check_data(path, tensors, data_start, file_size)
    return GgufInfo(path, version, file_size, alignment, data_start, metadata, tensors)


def _type_name(cursor: _Cursor, raw: int, what: str) -> gguf.GGUFValueType:
    try:
        return gguf.GGUFValueType(raw)
    except ValueError as err:
        raise InvalidFile(
            f"{cursor.path}: {what} has unknown value type {raw} at byte {cursor.pos - 4}"
        ) from err


def _read_value(cursor: _Cursor, key: str) -> Any:
    value_type = _type_name(cursor, cursor.unpack(_U32, f"the type of {key}"), key)
    if value_type == gguf.GGUFValueType.STRING:
        return cursor.string(key)
    if value_type != gguf.GGUFValueType.ARRAY:
        return cursor.unpack(_SCALARS[value_type], key)
    element_type = _type_name(cursor, cursor.unpack(_U32, f"the element type of {key}"), key)
    length = cursor.unpack(_U64, f"the length of {key}")
    if element_type == gguf.GGUFValueType.STRING:
        cursor.skip_strings(length, key)
    elif element_type == gguf.GGUFValueType.ARRAY:
        for index in range(length):
            _read_nested_array(cursor, f"{key}[{index}]")
    else:
        cursor.take(length * _SCALARS[element_type].size, key)
    return ArrayValue(element_type.name.lower(), length)


def _read_nested_array(cursor: _Cursor, what: str) -> None:
    inner = _type_name(cursor, cursor.unpack(_U32, what), what)
    length = cursor.unpack(_U64, what)
    if inner == gguf.GGUFValueType.STRING:
        cursor.skip_strings(length, what)
    elif inner in _SCALARS:
        cursor.take(length * _SCALARS[inner].size, what)
    else:
        raise InvalidFile(f"{cursor.path}: {what}: nested arrays of {inner.name} are not supported")


def _read_tensor_info(cursor: _Cursor, index: int) -> tuple[str, tuple[int, ...], int, int]:
    name = cursor.string(f"the name of tensor #{index}")
    n_dims = cursor.unpack(_U32, f"the dimensions of {name}")
    if n_dims > 8:
        raise InvalidFile(f"{cursor.path}: tensor {name!r} claims {n_dims} dimensions")
    shape = tuple(cursor.unpack(_U64, f"the shape of {name}") for _ in range(n_dims))
    raw_type = cursor.unpack(_U32, f"the type of {name}")
    offset = cursor.unpack(_U64, f"the offset of {name}")
    return name, shape, raw_type, offset


def _check_tensor(path: Path, info: tuple[str, tuple[int, ...], int, int], alignment: int) -> GgufTensor:
    name, shape, raw_type, offset = info
    try:
        qtype = gguf.GGMLQuantizationType(raw_type)
    except ValueError as err:
        raise InvalidFile(f"{path}: tensor {name!r} has unknown ggml type {raw_type}") from err
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    if shape and shape[0] % block_size:
        raise InvalidFile(
            f"{path}: tensor {name!r} row of {shape[0]} is not a multiple of {qtype.name} blocks"
        )
    if offset % alignment:
        raise InvalidFile(f"{path}: tensor {name!r} offset {offset} is not aligned to {alignment}")
    nbytes = math.prod(shape) // block_size * type_size
    return GgufTensor(name, shape, qtype.name, offset, nbytes)


def _check_data(path: Path, tensors: tuple[GgufTensor, ...], data_start: int, file_size: int) -> None:
    end_of_previous = 0
    for tensor in sorted(tensors, key=lambda t: t.offset):
        if tensor.offset < end_of_previous:
            raise InvalidFile(
                f"{path}: tensor {tensor.name!r} at data offset {tensor.offset} overlaps the previous one"
            )
        end_of_previous = tensor.offset + tensor.nbytes
        end = data_start + end_of_previous
        if end > file_size:
            raise InvalidFile(
                f"{path}: tensor {tensor.name!r} runs past the end of the file by {end - file_size} bytes "
                f"(ends at byte {end}, file has {file_size})",
                hint="the file is truncated; download or convert it again",
            )
    if tensors and data_start > file_size:
        raise InvalidFile(f"{path}: data section starts at byte {data_start}, past the end ({file_size})")
