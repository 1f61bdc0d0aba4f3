"""GGUF file layout at the byte level: metadata entries kept as raw bytes, tensor infos, data offset.

The quantizer copies metadata entries verbatim (so every key keeps its exact type) and rewrites only
the tensor infos, which is why it reads the layout itself instead of going through GGUFReader, which
also decodes every vocabulary string and is slow on large vocabularies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFValueType

from pipeline.errors import InvalidFile

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT_KEY = "general.alignment"

_SCALAR_SIZES = {
    GGUFValueType.UINT8: 1,
    GGUFValueType.INT8: 1,
    GGUFValueType.BOOL: 1,
    GGUFValueType.UINT16: 2,
    GGUFValueType.INT16: 2,
    GGUFValueType.UINT32: 4,
    GGUFValueType.INT32: 4,
    GGUFValueType.FLOAT32: 4,
    GGUFValueType.UINT64: 8,
    GGUFValueType.INT64: 8,
    GGUFValueType.FLOAT64: 8,
}
_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


@dataclass(frozen=True)
class MetadataEntry:
    """One key/value pair; `raw` is its whole encoding (key included), `value` is decoded for scalars."""

    key: str
    value_type: GGUFValueType
    raw: bytes
    value: int | float | bool | str | None


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: shape[0] is the row length
    ggml_type: GGMLQuantizationType
    offset: int  # relative to the start of the data section

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def n_dims(self) -> int:
        """Dimensions not counting trailing ones, as ggml_n_dims counts them."""
        dims = len(self.shape)
        while dims > 1 and self.shape[dims - 1] == 1:
            dims -= 1
        return dims

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.ggml_type)


@dataclass(frozen=True)
class GgufLayout:
    path: Path
    version: int
    metadata: tuple[MetadataEntry, ...]
    tensors: tuple[TensorInfo, ...]
    data_offset: int
    alignment: int

    def value(self, key: str) -> int | float | bool | str | None:
        for entry in self.metadata:
            if entry.key == key:
                return entry.value
        return None

    @property
    def architecture(self) -> str | None:
        arch = self.value("general.architecture")
        return arch if isinstance(arch, str) else None


def tensor_nbytes(shape: tuple[int, ...], ggml_type: GGMLQuantizationType) -> int:
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    n_elements = int(np.prod(shape, dtype=np.int64))
    return n_elements // block_size * type_size


def align(offset: int, alignment: int) -> int:
    return (offset + alignment - 1) // alignment * alignment


class _Cursor:
    def __init__(self, data: bytes | memoryview, path: Path) -> None:
        self.data = data
        self.pos = 0
        self.path = path

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise InvalidFile(f"{self.path}: truncated GGUF header at byte {self.pos}")
        chunk = bytes(self.data[self.pos : self.pos + size])
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> int:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        length = self.unpack("<Q")
        return self.take(length).decode("utf-8", errors="replace")

    def skip_value(self, value_type: GGUFValueType) -> int | float | bool | str | None:
        if value_type in _SCALAR_FORMATS:
            return struct.unpack(_SCALAR_FORMATS[value_type], self.take(_SCALAR_SIZES[value_type]))[0]
        if value_type == GGUFValueType.STRING:
            return self.string()
        if value_type == GGUFValueType.ARRAY:
            item_type = GGUFValueType(self.unpack("<I"))
            count = self.unpack("<Q")
            if item_type in _SCALAR_SIZES:
                self.take(count * _SCALAR_SIZES[item_type])
            else:
                for _ in range(count):
                    self.skip_value(item_type)
            return None
        raise InvalidFile(f"{self.path}: unknown GGUF value type {value_type} at byte {self.pos}")


def read_layout(path: Path) -> GgufLayout:
    """Reads the header of a GGUF file: metadata entries, tensor infos and where the data starts."""
    with open(path, "rb") as handle:
        head = handle.read(24)
        if len(head) < 24 or head[:4] != GGUF_MAGIC:
            raise InvalidFile(f"{path}: not a GGUF file (no GGUF magic)")
        version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
        if version not in (2, 3):
            raise InvalidFile(f"{path}: GGUF version {version} is not supported (expected 3)")
    data = np.memmap(path, dtype=np.uint8, mode="r")
    cursor = _Cursor(memoryview(data), path)
    cursor.pos = 24
    metadata = []
    for _ in range(n_kv):
        start = cursor.pos
        key = cursor.string()
        value_type = GGUFValueType(cursor.unpack("<I"))
        value = cursor.skip_value(value_type)
        metadata.append(MetadataEntry(key, value_type, bytes(data[start : cursor.pos]), value))
    tensors = []
    for _ in range(n_tensors):
        name = cursor.string()
        n_dims = cursor.unpack("<I")
        shape = tuple(cursor.unpack("<Q") for _ in range(n_dims))
        ggml_type = GGMLQuantizationType(cursor.unpack("<I"))
        offset = cursor.unpack("<Q")
        tensors.append(TensorInfo(name, shape, ggml_type, offset))
    alignment = next((int(e.value) for e in metadata if e.key == ALIGNMENT_KEY and e.value), None)
    alignment = alignment or GGUF_DEFAULT_ALIGNMENT
    data_offset = align(cursor.pos, alignment)
    layout = GgufLayout(path, version, tuple(metadata), tuple(tensors), data_offset, alignment)
    _check_bounds(layout, len(data))
    return layout


def _check_bounds(layout: GgufLayout, file_size: int) -> None:
    for tensor in layout.tensors:
        end = layout.data_offset + tensor.offset + tensor.nbytes
        if end > file_size:
            raise InvalidFile(
                f"{layout.path}: tensor {tensor.name} ends at byte {end}, past the end of the file "
                f"({file_size} bytes)",
                hint="the file is truncated; fetch or convert it again",
            )


def encode_string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def encode_u32_entry(key: str, value: int) -> bytes:
    return encode_string(key) + struct.pack("<II", GGUFValueType.UINT32, value)


def encode_tensor_info(
    name: str, shape: tuple[int, ...], ggml_type: GGMLQuantizationType, offset: int
) -> bytes:
    parts = [encode_string(name), struct.pack("<I", len(shape))]
    parts += [struct.pack("<Q", dim) for dim in shape]
    parts.append(struct.pack("<IQ", ggml_type, offset))
    return b"".join(parts)


def encode_header(n_tensors: int, entries: list[bytes], infos: list[bytes], alignment: int) -> bytes:
    """The whole header including the padding up to the data section."""
    header = GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, n_tensors, len(entries))
    header += b"".join(entries) + b"".join(infos)
    return header + bytes(align(len(header), alignment) - len(header))
