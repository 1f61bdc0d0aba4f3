"""The emulator's own Candid codec, independent of icp_candid so one library's bug cannot hide on both sides.

Values: records are dicts keyed by field name, variants are one-item dicts {"Tag": value} (None for a
null payload), opt is None or the value, vec nat8 is bytes, principal is its raw bytes, a method's
argument or reply list is a Python list.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

MAGIC = b"DIDL"


class CandidDecodeError(ValueError):
    """The bytes are not a Candid message of the expected type."""


def idl_hash(name: str) -> int:
    value = 0
    for byte in name.encode():
        value = (value * 223 + byte) % (1 << 32)
    return value


def leb128(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"unsigned LEB128 of negative {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sleb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte if done else byte | 0x80)
        if done:
            return bytes(out)


class Type:
    """A Candid type: knows its wire opcode, how to encode a value and its .did spelling."""

    opcode: int = 0

    def did(self) -> str:
        raise NotImplementedError

    def encode_value(self, value: Any, out: bytearray) -> None:
        raise NotImplementedError

    def is_compound(self) -> bool:
        return False


@dataclass(frozen=True)
class Prim(Type):
    name: str
    opcode: int
    fmt: str = ""

    def did(self) -> str:
        return self.name

    def encode_value(self, value: Any, out: bytearray) -> None:
        name = self.name
        if name == "null" or name == "reserved":
            return
        if name == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"bool expected, got {value!r}")
            out.append(1 if value else 0)
        elif name == "nat":
            out += leb128(_int(value))
        elif name == "int":
            out += sleb128(_int(value))
        elif name == "text":
            if not isinstance(value, str):
                raise TypeError(f"text expected, got {type(value).__name__}")
            data = value.encode()
            out += leb128(len(data)) + data
        elif name == "principal":
            raw = bytes(value)
            out += b"\x01" + leb128(len(raw)) + raw
        elif self.fmt:
            number = value if self.fmt in "fd" and isinstance(value, float) else _int(value)
            try:
                out += struct.pack("<" + self.fmt, number)
            except struct.error as exc:
                raise TypeError(f"{value!r} does not fit {name}") from exc
        else:
            raise TypeError(f"cannot encode a value of type {name}")


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"integer expected, got {value!r}")
    return value


NULL = Prim("null", 0x7F)
BOOL = Prim("bool", 0x7E)
NAT = Prim("nat", 0x7D)
INT = Prim("int", 0x7C)
NAT8 = Prim("nat8", 0x7B, "B")
NAT16 = Prim("nat16", 0x7A, "H")
NAT32 = Prim("nat32", 0x79, "I")
NAT64 = Prim("nat64", 0x78, "Q")
INT8 = Prim("int8", 0x77, "b")
INT16 = Prim("int16", 0x76, "h")
INT32 = Prim("int32", 0x75, "i")
INT64 = Prim("int64", 0x74, "q")
FLOAT32 = Prim("float32", 0x73, "f")
FLOAT64 = Prim("float64", 0x72, "d")
TEXT = Prim("text", 0x71)
RESERVED = Prim("reserved", 0x70)
EMPTY = Prim("empty", 0x6F)
PRINCIPAL = Prim("principal", 0x68)
PRIMS_BY_OPCODE = {
    p.opcode: p
    for p in (
        NULL, BOOL, NAT, INT, NAT8, NAT16, NAT32, NAT64, INT8, INT16, INT32, INT64,
        FLOAT32, FLOAT64, TEXT, RESERVED, EMPTY, PRINCIPAL,
    )
}  # fmt: skip


@dataclass(frozen=True)
class Opt(Type):
    inner: Type
    opcode: int = 0x6E

    def did(self) -> str:
        return f"opt {self.inner.did()}"

    def is_compound(self) -> bool:
        return True

    def encode_value(self, value: Any, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            self.inner.encode_value(value, out)


@dataclass(frozen=True)
class Vec(Type):
    inner: Type
    opcode: int = 0x6D

    def did(self) -> str:
        return "blob" if self.inner == NAT8 else f"vec {self.inner.did()}"

    def is_compound(self) -> bool:
        return True

    def encode_value(self, value: Any, out: bytearray) -> None:
        if self.inner == NAT8 and isinstance(value, (bytes, bytearray, memoryview)):
            out += leb128(len(value))
            out += value
            return
        items = list(value)
        out += leb128(len(items))
        for item in items:
            self.inner.encode_value(item, out)


# Candid keywords used as field names must be quoted in .did text (ic_llm has `"type" : text`).
_KEYWORDS = frozenset((
    "blob", "bool", "empty", "float32", "float64", "func", "import", "int", "int8", "int16", "int32", "int64",
    "nat", "nat8", "nat16", "nat32", "nat64", "null", "oneway", "opt", "principal", "query", "record",
    "reserved", "service", "text", "type", "variant", "vec", "composite_query",
))  # fmt: skip


def _fields_did(fields: tuple[tuple[str, Type], ...], variant: bool) -> str:
    parts = []
    for name, typ in fields:
        label = f'"{name}"' if name in _KEYWORDS else name
        if variant and typ == NULL:
            parts.append(label)
        else:
            parts.append(f"{label} : {typ.did()}")
    return "{ " + "; ".join(parts) + " }" if parts else "{}"


@dataclass(frozen=True)
class _Fields(Type):
    """Record and variant: named fields, sent on the wire in the order of their hashed ids."""

    fields: tuple[tuple[str, Type], ...]

    def is_compound(self) -> bool:
        return True

    def sorted_fields(self) -> list[tuple[int, str, Type]]:
        return sorted((idl_hash(name), name, typ) for name, typ in self.fields)


@dataclass(frozen=True)
class Record(_Fields):
    opcode: int = 0x6C

    def did(self) -> str:
        return "record " + _fields_did(self.fields, variant=False)

    def encode_value(self, value: Any, out: bytearray) -> None:
        for _, name, typ in self.sorted_fields():
            if name not in value:
                if isinstance(typ, Opt):
                    out.append(0)
                    continue
                raise TypeError(f"record field {name!r} missing")
            typ.encode_value(value[name], out)


@dataclass(frozen=True)
class Variant(_Fields):
    opcode: int = 0x6B

    def did(self) -> str:
        return "variant " + _fields_did(self.fields, variant=True)

    def encode_value(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, dict) or len(value) != 1:
            raise TypeError(f"variant value must be a one-item dict, got {value!r}")
        ((tag, payload),) = value.items()
        for index, (_, name, typ) in enumerate(self.sorted_fields()):
            if name == tag:
                out += leb128(index)
                typ.encode_value(payload, out)
                return
        raise TypeError(f"variant has no tag {tag!r}")


def record(**fields: Type) -> Record:
    return Record(tuple(fields.items()))


def variant(**fields: Type) -> Variant:
    return Variant(tuple(fields.items()))


BLOB = Vec(NAT8)


# ---------------------------------------------------------------- encoding


class _TypeTable:
    def __init__(self) -> None:
        self.entries: list[bytes] = []
        self.index: dict[Type, int] = {}

    def ref(self, typ: Type) -> bytes:
        if not typ.is_compound():
            return sleb128(typ.opcode - 0x80)
        if typ not in self.index:
            self.index[typ] = len(self.entries)
            self.entries.append(b"")
            self.entries[self.index[typ]] = self._entry(typ)
        return sleb128(self.index[typ])

    def _entry(self, typ: Type) -> bytes:
        out = bytearray(sleb128(typ.opcode - 0x80))
        if isinstance(typ, (Opt, Vec)):
            out += self.ref(typ.inner)
        elif isinstance(typ, (Record, Variant)):
            fields = typ.sorted_fields()
            out += leb128(len(fields))
            for field_id, _, field_type in fields:
                out += leb128(field_id) + self.ref(field_type)
        return bytes(out)


def encode(types: list[Type], values: list[Any]) -> bytes:
    if len(types) != len(values):
        raise TypeError(f"{len(types)} types but {len(values)} values")
    table = _TypeTable()
    refs = [table.ref(t) for t in types]
    out = bytearray(MAGIC)
    out += leb128(len(table.entries))
    for entry in table.entries:
        out += entry
    out += leb128(len(types))
    for ref in refs:
        out += ref
    for typ, value in zip(types, values, strict=False):
        typ.encode_value(value, out)
    return bytes(out)


# ---------------------------------------------------------------- decoding


@dataclass
class _WireType:
    """A type as read from the message's type table (field ids, not names)."""

    opcode: int
    inner: Any = None
    fields: list[tuple[int, Any]] | None = None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise CandidDecodeError("message ends early")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def uleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    def sleb(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b & 0x40:
                    result -= 1 << shift
                return result


def _read_type_table(reader: _Reader) -> list[_WireType]:
    count = reader.uleb()
    table = [_WireType(0) for _ in range(count)]
    for entry in table:
        opcode = reader.sleb() + 0x80
        entry.opcode = opcode
        if opcode in (0x6E, 0x6D):
            entry.inner = reader.sleb()
        elif opcode in (0x6C, 0x6B):
            entry.fields = []
            previous = -1
            for _ in range(reader.uleb()):
                field_id = reader.uleb()
                if field_id <= previous:
                    raise CandidDecodeError("record/variant field ids not strictly increasing")
                previous = field_id
                entry.fields.append((field_id, reader.sleb()))
        else:
            raise CandidDecodeError(f"unsupported type opcode {opcode - 0x80} in type table")
    for entry in table:
        entry.inner = _resolve(entry.inner, table) if entry.inner is not None else None
        if entry.fields is not None:
            entry.fields = [(fid, _resolve(ref, table)) for fid, ref in entry.fields]
    return table


def _resolve(ref: int, table: list[_WireType]) -> _WireType:
    if ref >= 0:
        if ref >= len(table):
            raise CandidDecodeError(f"type index {ref} out of range")
        return table[ref]
    opcode = ref + 0x80
    if opcode not in PRIMS_BY_OPCODE:
        raise CandidDecodeError(f"unknown primitive type {ref}")
    return _WireType(opcode)


def _read_value(reader: _Reader, wire: _WireType) -> Any:
    op = wire.opcode
    if op in PRIMS_BY_OPCODE:
        prim = PRIMS_BY_OPCODE[op]
        if prim.fmt:
            size = struct.calcsize(prim.fmt)
            return struct.unpack("<" + prim.fmt, reader.take(size))[0]
        if prim is NULL or prim is RESERVED:
            return None
        if prim is BOOL:
            b = reader.byte()
            if b > 1:
                raise CandidDecodeError(f"invalid bool byte {b}")
            return bool(b)
        if prim is NAT:
            return reader.uleb()
        if prim is INT:
            return reader.sleb()
        if prim is TEXT:
            try:
                return bytes(reader.take(reader.uleb())).decode()
            except UnicodeDecodeError as exc:
                raise CandidDecodeError("text is not valid UTF-8") from exc
        if prim is PRINCIPAL:
            if reader.byte() != 1:
                raise CandidDecodeError("opaque principal references are not supported")
            return bytes(reader.take(reader.uleb()))
        raise CandidDecodeError("a value of type empty cannot exist")
    if op == 0x6E:
        flag = reader.byte()
        if flag > 1:
            raise CandidDecodeError(f"invalid opt flag {flag}")
        return _read_value(reader, wire.inner) if flag else None
    if op == 0x6D:
        length = reader.uleb()
        if wire.inner.opcode == NAT8.opcode:
            return bytes(reader.take(length))
        return [_read_value(reader, wire.inner) for _ in range(length)]
    if op == 0x6C:
        return {fid: _read_value(reader, ftype) for fid, ftype in wire.fields}
    if op == 0x6B:
        index = reader.uleb()
        if index >= len(wire.fields):
            raise CandidDecodeError(f"variant index {index} out of range")
        fid, ftype = wire.fields[index]
        return (fid, _read_value(reader, ftype))
    raise CandidDecodeError(f"unsupported opcode {op}")


def _conform(value: Any, wire: _WireType, expected: Type, where: str) -> Any:
    """Check a wire value against the expected type (Candid subtyping) and name its fields."""
    if expected == RESERVED:
        return None
    if isinstance(expected, Opt):
        if wire.opcode == NULL.opcode or wire.opcode == RESERVED.opcode:
            return None
        if wire.opcode == 0x6E:
            return None if value is None else _conform(value, wire.inner, expected.inner, where)
        return _conform(value, wire, expected.inner, where)
    if expected.opcode != wire.opcode:
        raise CandidDecodeError(f"{where}: expected {expected.did()}, got {_wire_name(wire)}")
    if isinstance(expected, Prim):
        return value
    if isinstance(expected, Vec):
        if expected.inner == NAT8:
            return value
        return [_conform(v, wire.inner, expected.inner, f"{where}[{i}]") for i, v in enumerate(value)]
    wire_types = dict(wire.fields)
    if isinstance(expected, Record):
        result = {}
        for fid, name, ftype in expected.sorted_fields():
            if fid in value:
                result[name] = _conform(value[fid], wire_types[fid], ftype, f"{where}.{name}")
            elif isinstance(ftype, Opt) or ftype == RESERVED:
                result[name] = None
            else:
                raise CandidDecodeError(f"{where}: record field {name!r} missing")
        return result
    if isinstance(expected, Variant):
        fid, payload = value
        for efid, name, ftype in expected.sorted_fields():
            if efid == fid:
                return {name: _conform(payload, wire_types[fid], ftype, f"{where}.{name}")}
        raise CandidDecodeError(f"{where}: variant tag with id {fid} is not in {expected.did()}")
    raise CandidDecodeError(f"{where}: unsupported expected type {expected!r}")


def _wire_name(wire: _WireType) -> str:
    if wire.opcode in PRIMS_BY_OPCODE:
        return PRIMS_BY_OPCODE[wire.opcode].name
    return {0x6E: "opt", 0x6D: "vec", 0x6C: "record", 0x6B: "variant"}.get(wire.opcode, str(wire.opcode))


def decode(data: bytes, types: list[Type]) -> list[Any]:
    """Decode a Candid message strictly against `types`; extra trailing arguments are ignored."""
    if not data.startswith(MAGIC):
        raise CandidDecodeError("missing DIDL magic")
    reader = _Reader(data)
    reader.take(4)
    table = _read_type_table(reader)
    wire_args = [_resolve(reader.sleb(), table) for _ in range(reader.uleb())]
    raw = [_read_value(reader, w) for w in wire_args]
    if reader.pos != len(data):
        raise CandidDecodeError(f"{len(data) - reader.pos} trailing bytes after the arguments")
    result = []
    for index, expected in enumerate(types):
        where = f"argument {index}"
        if index < len(raw):
            result.append(_conform(raw[index], wire_args[index], expected, where))
        elif isinstance(expected, Opt) or expected in (NULL, RESERVED):
            result.append(None)
        else:
            raise CandidDecodeError(f"{where} ({expected.did()}) missing: got {len(raw)} argument(s)")
    return result


def did_args(types: list[Type]) -> str:
    return "(" + ", ".join(t.did() for t in types) + ")"
