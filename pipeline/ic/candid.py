"""Candid values as plain Python, and service interfaces from .did text, over icp_candid.

Types are written as Candid text ("record { filename : text; chunk : blob }") or given as icp_candid
types. Values: records are dicts (tuples are lists), variants `{"Tag": value}` (None for a null
payload), opt is the value or None, blobs are `bytes`, principals are their text form.
Blobs are handed to icp_candid as `bytes`: its fast path skips per-byte encoding only for those.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from _ic_candid_core import _ic_candid_core as did_parser
from icp_candid import candid as _ic

from pipeline.errors import PrepError

CandidType = _ic.Type
TypeLike = str | CandidType

_PRIMITIVES: dict[str, CandidType] = {
    "nat": _ic.Types.Nat, "int": _ic.Types.Int, "text": _ic.Types.Text, "bool": _ic.Types.Bool,
    "null": _ic.Types.Null, "float32": _ic.Types.Float32, "float64": _ic.Types.Float64,
    "nat8": _ic.Types.Nat8, "nat16": _ic.Types.Nat16, "nat32": _ic.Types.Nat32, "nat64": _ic.Types.Nat64,
    "int8": _ic.Types.Int8, "int16": _ic.Types.Int16, "int32": _ic.Types.Int32, "int64": _ic.Types.Int64,
    "principal": _ic.Types.Principal, "reserved": _ic.Types.Reserved, "empty": _ic.Types.Empty,
}  # fmt: skip


_SPLICE_MIN_BYTES = 64 * 1024
_MARKER_BYTES = 16


class CandidError(PrepError):
    """A value or a .did that does not fit Candid or the expected type."""


@dataclass(frozen=True)
class MethodType:
    name: str
    args: tuple[CandidType, ...]
    rets: tuple[CandidType, ...]
    modes: tuple[str, ...]

    @property
    def is_query(self) -> bool:
        return "query" in self.modes or "composite_query" in self.modes


@dataclass(frozen=True)
class ServiceInterface:
    methods: dict[str, MethodType]
    source: str


def parse_service(did_text: str, source: str = "<did>") -> ServiceInterface:
    """The methods of a .did's service, with icp_candid types."""
    ast = _parse_did(did_text, source)
    env = {entry["name"]: entry["datatype"] for entry in ast.get("env") or []}
    methods_ast = list((ast.get("actor") or {}).get("methods") or [])
    if not methods_ast:
        services = [node for node in env.values() if node.get("type") == "Service"]
        methods_ast = list(services[-1].get("value") or []) if services else []
    builder = _TypeBuilder(env)
    methods = {}
    for m in methods_ast:
        modes = tuple(sorted("composite_query" if x == "compositequery" else x for x in m.get("modes") or []))
        args = [builder.build(node) for node in m.get("args") or []]
        rets = [builder.build(node) for node in m.get("rets") or []]
        methods[m["name"]] = MethodType(m["name"], tuple(args), tuple(rets), modes)
    return ServiceInterface(methods, source)


@lru_cache(maxsize=512)
def parse_type(text: str) -> CandidType:
    """One Candid type from its text, e.g. "variant { Ok : nat64; Err : text }"."""
    ast = _parse_did(f"type __prep_t = {text};\nservice : {{}}", f"type '{text}'")
    env = {entry["name"]: entry["datatype"] for entry in ast.get("env") or []}
    return _TypeBuilder(env).build(env["__prep_t"])


def encode(types: list[TypeLike] | tuple[TypeLike, ...], values: list[Any] | tuple[Any, ...]) -> bytes:
    if len(types) != len(values):
        raise CandidError(f"candid: {len(types)} types but {len(values)} values")
    resolved = [_resolve(t) for t in types]
    large_blobs: dict[bytes, bytes] = {}
    try:
        params = [
            {"type": t, "value": _to_icp(t, v, large_blobs)} for t, v in zip(resolved, values, strict=True)
        ]
        return _splice_blobs(_ic.encode(params), large_blobs)
    except CandidError:
        raise
    except Exception as err:
        raise CandidError(
            f"candid: cannot encode {_short(values)} as {[t.name for t in resolved]}: {err}"
        ) from None


def decode(data: bytes, types: list[TypeLike] | tuple[TypeLike, ...] | None = None) -> list[Any]:
    """Decode a reply. Without `types`, field and tag names are Candid hashes and opt stays [] / [x]."""
    resolved = [_resolve(t) for t in types] if types else None
    if zero_sized_vectors(bytes(data)):  # prep's own reply types have none: refuse the decoding bomb
        raise CandidError("candid: the reply declares a vector of zero-sized values; refusing it")
    try:
        decoded = _ic.decode(bytes(data), resolved)
    except Exception as err:
        raise CandidError(f"candid: cannot decode reply ({len(data)} bytes): {err}") from None
    if resolved is None:
        return [_from_icp(None, item["value"]) for item in decoded]
    return [_from_icp(t, item["value"]) for t, item in zip(resolved, decoded, strict=True)]


def _parse_did(text: str, source: str) -> dict[str, Any]:
    try:
        return json.loads(did_parser.parse_did(text))
    except ValueError as err:
        raise CandidError(f"{source}: not valid Candid: {err}") from None


def _resolve(t: TypeLike) -> CandidType:
    return parse_type(t) if isinstance(t, str) else t


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _TypeBuilder:
    """Builds icp_candid types from the parser's JSON; named types become shared (recursive) nodes."""

    def __init__(self, env: dict[str, Any]) -> None:
        self._env = env
        self._named: dict[str, CandidType] = {}

    def build(self, node: Any) -> CandidType:
        kind = node["type"]
        value = node.get("value")
        if kind == "Prim":
            if value not in _PRIMITIVES:
                raise CandidError(f"candid: unknown primitive type '{value}'")
            return _PRIMITIVES[value]
        if kind == "Principal":
            return _ic.Types.Principal
        if kind == "Opt":
            return _ic.Types.Opt(self.build(value))
        if kind == "Vec":
            return _ic.Types.Vec(self.build(value))
        if kind == "Record":
            return _ic.Types.Record({_label(k): self.build(v) for k, v in value})
        if kind == "Variant":
            return _ic.Types.Variant({_label(k): self.build(v) if v else _ic.Types.Null for k, v in value})
        if kind == "Id":
            return self._named_type(value)
        if kind == "Func":
            return _ic.Types.Func(
                [self.build(x) for x in value["args"]], [self.build(x) for x in value["rets"]], value["modes"]
            )
        if kind == "Service":
            return _ic.Types.Service({})
        raise CandidError(f"candid: unsupported type node '{kind}'")

    def _named_type(self, name: str) -> CandidType:
        if name not in self._env:
            raise CandidError(f"candid: type '{name}' is used but not defined")
        if name not in self._named:
            placeholder = _ic.Types.Rec()
            self._named[name] = placeholder
            placeholder.fill(self.build(self._env[name]))
        return self._named[name]


def _label(key: str) -> str | int:
    return int(key) if key.isdigit() else key


def _base(t: CandidType) -> CandidType:
    return t.get_type() if isinstance(t, _ic.RecClass) else t


def _splice_blobs(encoded: bytes, large_blobs: dict[bytes, bytes]) -> bytes:
    """Put large blobs where their markers are: one copy of each, where icp_candid would make four."""
    if not large_blobs:
        return encoded
    parts, start = [], 0
    positions = sorted((encoded.index(marker), marker) for marker in large_blobs)
    for position, marker in positions:
        blob = large_blobs[marker]
        parts += [encoded[start : position - 1], _ic.LEB128.encode_u(len(blob)), blob]
        start = position + len(marker)
    parts.append(encoded[start:])
    return b"".join(parts)


def _to_icp(t: CandidType, value: Any, large_blobs: dict[bytes, bytes]) -> Any:
    """Our plain values to what icp_candid's encoder takes; large blobs become markers to splice."""
    t = _base(t)
    if isinstance(t, _ic.OptClass):
        return [] if value is None else [_to_icp(t._type, value, large_blobs)]
    if isinstance(t, _ic.VecClass):
        if t._is_blob and isinstance(value, (bytes, bytearray, memoryview)):
            if len(value) < _SPLICE_MIN_BYTES:
                return bytes(value)
            marker = secrets.token_bytes(_MARKER_BYTES)  # LEB128 of its length is one byte
            large_blobs[marker] = value if isinstance(value, bytes) else bytes(value)
            return marker
        return [_to_icp(t._type, v, large_blobs) for v in value]
    if isinstance(t, _ic.RecordClass):
        fields = t._field_map.values()
        if isinstance(value, (list, tuple)):
            return {name: _to_icp(ft, value[int(name)], large_blobs) for name, ft in fields}
        # Like Candid's decoders, a missing optional field means null.
        missing = [
            name for name, ft in fields if name not in value and not isinstance(_base(ft), _ic.OptClass)
        ]
        if missing:
            raise CandidError(f"candid: record {_short(value)} lacks field(s) {', '.join(missing)}")
        return {name: _to_icp(ft, value.get(name), large_blobs) for name, ft in fields}
    if isinstance(t, _ic.VariantClass):
        if isinstance(value, str):  # a tag alone, as profile templates write `role = "user"`
            value = {value: None}
        if not isinstance(value, dict) or len(value) != 1:
            raise CandidError(f"candid: a variant is a one-key dict {{'Tag': value}}, got {_short(value)}")
        ((tag, payload),) = value.items()
        matching = [ft for name, ft in t._field_map.values() if str(name) == str(tag)]
        if not matching:
            raise CandidError(f"candid: variant has no tag '{tag}'")
        return {tag: _to_icp(matching[0], payload, large_blobs)}
    if t is _ic.Types.Text and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a number filled into a text template, e.g. "-n", "{max_tokens}"
    return value


def _from_icp(t: CandidType | None, value: Any) -> Any:
    """icp_candid's decoded values to plain Python (cbor-free, opt unwrapped when the type is known)."""
    t = _base(t) if t is not None else None
    if isinstance(t, _ic.OptClass):
        return _from_icp(t._type, value[0]) if value else None
    if isinstance(value, (bytes, str, bool, int, float)) or value is None:
        return value
    if isinstance(value, list):
        if isinstance(t, _ic.VecClass):
            return [_from_icp(t._type, v) for v in value]
        if isinstance(t, _ic.RecordClass):
            types_by_name = {name: ft for name, ft in t._field_map.values()}
            return [_from_icp(types_by_name.get(str(i)), v) for i, v in enumerate(value)]
        return [_from_icp(None, v) for v in value]
    if isinstance(value, dict):
        field_types = {str(name): ft for name, ft in t._field_map.values()} if t is not None else {}
        return {str(k): _from_icp(field_types.get(str(k)), v) for k, v in value.items()}
    if hasattr(value, "to_str"):
        return value.to_str()
    return value


# Type opcodes of a Candid message's type table (signed LEB128).
_OPT, _VEC, _RECORD, _VARIANT, _FUNC, _SERVICE = -18, -19, -20, -21, -22, -23
_ZERO_SIZED_PRIMITIVES = (-1, -16, -17)  # null, reserved, empty: a value of these takes no bytes


def zero_sized_vectors(data: bytes) -> set[int]:
    """Checks a message's type table and returns the entries that are vectors of zero-sized values.

    Every count must fit in the bytes that remain. A vector of zero-sized values (`vec null` of 2^60
    elements is ten bytes long) is the one thing whose decoding time does not follow the message's
    length: callers refuse them or cap their items.
    """
    reader = _Reader(data)
    if reader.take(4) != b"DIDL":
        raise CandidError(f"candid: a reply must start with DIDL, got {data[:4]!r}")
    table: list[tuple[int, list[int]]] = []
    for _ in range(reader.count("type table")):
        opcode = reader.sleb()
        if opcode in (_OPT, _VEC):
            table.append((opcode, [reader.sleb()]))
        elif opcode in (_RECORD, _VARIANT):
            fields = [(reader.uleb(), reader.sleb()) for _ in range(reader.count("fields"))]
            table.append((opcode, [t for _, t in fields]))
        elif opcode == _FUNC:
            refs = [reader.sleb() for _ in range(reader.count("arguments"))]
            refs += [reader.sleb() for _ in range(reader.count("results"))]
            reader.take(reader.count("annotations"))
            table.append((opcode, refs))
        elif opcode == _SERVICE:
            methods = []
            for _ in range(reader.count("methods")):
                reader.take(reader.count("name bytes"))
                methods.append(reader.sleb())
            table.append((opcode, methods))
        else:
            raise CandidError(f"candid: the reply's type table has an unknown type code {opcode}")
    for _ in range(reader.count("arguments")):
        _type_ref(table, reader.sleb())
    for _, refs in table:
        for ref in refs:
            _type_ref(table, ref)
    return {
        i for i, (opcode, refs) in enumerate(table) if opcode == _VEC and _zero_sized(table, refs[0], set())
    }


def _type_ref(table: list[tuple[int, list[int]]], ref: int) -> None:
    if ref >= len(table) or ref < -24:
        raise CandidError(f"candid: the reply refers to type {ref}, which it does not declare")


def _zero_sized(table: list[tuple[int, list[int]]], ref: int, seen: set[int]) -> bool:
    if ref < 0:
        return ref in _ZERO_SIZED_PRIMITIVES
    if ref in seen:
        return True  # a record that contains itself and nothing else
    opcode, refs = table[ref]
    return opcode == _RECORD and all(_zero_sized(table, r, seen | {ref}) for r in refs)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def take(self, n: int) -> bytes:
        piece = self._data[self._at : self._at + n]
        self._at += n
        return piece

    def count(self, what: str) -> int:
        """A length that must be backed by at least one byte per item."""
        n = self.uleb()
        if n > len(self._data) - self._at:
            raise CandidError(f"candid: the reply declares {n} {what}, more than its length allows")
        return n

    def uleb(self) -> int:
        value = shift = 0
        while True:
            byte = self._byte()
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value
            if shift > 70:
                raise CandidError("candid: a number in the reply is longer than 64 bits")

    def sleb(self) -> int:
        value = shift = 0
        while True:
            byte = self._byte()
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value - (1 << shift) if byte & 0x40 else value
            if shift > 70:
                raise CandidError("candid: a number in the reply is longer than 64 bits")

    def _byte(self) -> int:
        if self._at >= len(self._data):
            raise CandidError("candid: the reply ends inside its type table")
        self._at += 1
        return self._data[self._at - 1]
