"""Candid messages read by their own type table: the wire types and the values, nothing expected.

icp_candid decodes either at an expected type (where its own subtyping has gaps) or by the wire types
without returning them. prep needs both, to decide by the spec (pipeline.ic.subtyping) what a reply
means, so the type table is read here into icp_candid types and each value is decoded at its own type.
"""

from __future__ import annotations

from typing import Any

from icp_candid import candid as _ic

from pipeline.ic.candid import CandidError, zero_sized_vectors

_PRIMITIVES = {
    -1: _ic.Types.Null, -2: _ic.Types.Bool, -3: _ic.Types.Nat, -4: _ic.Types.Int, -5: _ic.Types.Nat8,
    -6: _ic.Types.Nat16, -7: _ic.Types.Nat32, -8: _ic.Types.Nat64, -9: _ic.Types.Int8, -10: _ic.Types.Int16,
    -11: _ic.Types.Int32, -12: _ic.Types.Int64, -13: _ic.Types.Float32, -14: _ic.Types.Float64,
    -15: _ic.Types.Text, -16: _ic.Types.Reserved, -17: _ic.Types.Empty, -24: _ic.Types.Principal,
}  # fmt: skip
_OPT, _VEC, _RECORD, _VARIANT, _FUNC, _SERVICE = -18, -19, -20, -21, -22, -23
_MAGIC = b"DIDL"
# No canister prep talks to sends more zero-sized items (`vec null`, `vec record {}`) than this.
MAX_ZERO_SIZED_ITEMS = 65_536


def decode_typed(data: bytes) -> list[tuple[_ic.Type, Any]]:
    """(wire type, value) per value of a Candid message. Records are dicts keyed by the field hash as
    text (lists when tuple-like), variants one-key dicts keyed by the tag hash, opt `[]` / `[x]`."""
    if not data.startswith(_MAGIC):
        raise CandidError(f"candid: reply of {len(data)} bytes does not start with DIDL")
    zero_sized = zero_sized_vectors(bytes(data))
    pipe = _ic.Pipe(bytes(data[len(_MAGIC) :]))
    try:
        table = _read_table(pipe, zero_sized, _Allowance(MAX_ZERO_SIZED_ITEMS))
        types = [_entry(table, _leb_i(pipe)) for _ in range(_count(pipe))]
        values = [(t, t.decodeValue(pipe, t)) for t in types]
    except CandidError:
        raise
    except (ValueError, IndexError, KeyError, RecursionError, UnicodeDecodeError) as err:
        raise CandidError(f"candid: cannot decode reply ({len(data)} bytes): {err}") from None
    return values


def _read_table(pipe: Any, zero_sized: set[int], allowance: _Allowance) -> list[Any]:
    table = [_ic.Types.Rec() for _ in range(_count(pipe))]
    for index, slot in enumerate(table):
        code = _leb_i(pipe)
        if code in (_OPT, _VEC):
            inner = _entry(table, _leb_i(pipe))
            if code == _OPT:
                slot.fill(_ic.Types.Opt(inner))
            else:
                slot.fill(_CountedVec(inner, allowance) if index in zero_sized else _ic.Types.Vec(inner))
        elif code in (_RECORD, _VARIANT):
            fields: dict[int, Any] = {}
            previous = -1
            for _ in range(_count(pipe)):
                h = _ic.LEB128.decode_u(pipe)
                if h <= previous or h >= 2**32:
                    raise CandidError("candid: reply's field ids are not sorted 32-bit hashes")
                fields[h], previous = _entry(table, _leb_i(pipe)), h
            slot.fill(_ic.Types.Record(fields) if code == _RECORD else _ic.Types.Variant(fields))
        elif code == _FUNC:
            args = [_entry(table, _leb_i(pipe)) for _ in range(_count(pipe))]
            rets = [_entry(table, _leb_i(pipe)) for _ in range(_count(pipe))]
            modes = [{1: "query", 2: "oneway", 3: "composite_query"}.get(pipe.read_byte(), "?")
                     for _ in range(_count(pipe))]  # fmt: skip
            slot.fill(_ic.Types.Func(args, rets, modes))
        elif code == _SERVICE:
            methods = {}
            for _ in range(_count(pipe)):
                name = pipe.read(_count(pipe)).decode("utf-8")
                methods[name] = _entry(table, _leb_i(pipe))
            slot.fill(_ic.Types.Service(methods))
        else:
            raise CandidError(f"candid: reply's type table has an unknown type code {code}")
    return table


class _Allowance:
    """How many more zero-sized items one message may still decode."""

    def __init__(self, items: int) -> None:
        self.items = items


class _CountedVec(_ic.VecClass):
    """A vector of zero-sized values (e.g. `vec null`): its items cost no bytes, so they are counted
    against the message's allowance instead of trusting the announced length."""

    def __init__(self, inner: Any, allowance: _Allowance) -> None:
        super().__init__(inner)
        self._allowance = allowance

    def decodeValue(self, b: Any, t: Any) -> list[Any]:  # noqa: N802 (icp_candid's name)
        vec = self.checkType(t)
        length = int(_ic.LEB128.decode_u(b))
        self._allowance.items -= length
        if self._allowance.items < 0:
            raise CandidError(f"candid: reply announces {length} zero-sized items; refusing more than "
                              f"{MAX_ZERO_SIZED_ITEMS} per message")  # fmt: skip
        return [self._type.decodeValue(b, vec._type) for _ in range(length)]


def _entry(table: list[Any], index: int) -> Any:
    if index >= 0:
        if index >= len(table):
            raise CandidError(f"candid: reply refers to type {index} of a {len(table)}-entry table")
        return table[index]
    if index not in _PRIMITIVES:
        raise CandidError(f"candid: reply uses an unknown primitive type {index}")
    return _PRIMITIVES[index]


def _count(pipe: Any) -> int:
    """A length prefix; no honest message announces more items than it has bytes left."""
    count = int(_ic.LEB128.decode_u(pipe))
    if count > pipe.remaining:
        raise CandidError(f"candid: reply announces {count} items with {pipe.remaining} bytes left")
    return count


def _leb_i(pipe: Any) -> int:
    return int(_ic.LEB128.decode_i(pipe))
