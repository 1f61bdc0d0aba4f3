"""Candid subtyping and coercion (the spec's "Upgrading and Subtyping" and "Coercion" sections).

`check(sub, sup)` says whether a value of type `sub` decodes at type `sup`, and if not, where and why:
records may gain fields and lose optional ones, variants may lose cases, `nat` widens to `int`,
anything fits `reserved`, and `t` fits `opt t`. `coerce` does that decoding on a value read by its own
wire type, so what prep accepts is decided here, by the spec, not by a decoder's quirks.

Candid also lets *any* type fit `opt t` (the value then reads as null), so that upgrades stay
transitive. The spec asks implementations to warn when that rule is used: `check` records those
places in `Fit.lossy`, since prep then always reads null there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from icp_candid import candid as _ic

CandidType = _ic.Type


@dataclass(frozen=True)
class Mismatch:
    """Where a type does not fit (a path of field / case labels) and why."""

    path: tuple[str, ...]
    reason: str

    def __str__(self) -> str:
        return f"{'.'.join(self.path)}: {self.reason}" if self.path else self.reason


@dataclass
class Fit:
    mismatch: Mismatch | None = None
    lossy: list[Mismatch] = field(default_factory=list)  # places that Candid reads as null

    @property
    def ok(self) -> bool:
        return self.mismatch is None


class CoercionError(ValueError):
    """A value that does not decode at the expected type."""


def check(sub: CandidType, sup: CandidType, path: tuple[str, ...] = ()) -> Fit:
    """Is `sub <: sup`? The first mismatch found, plus the places that only fit as null."""
    checker = _Checker()
    return Fit(checker.check(sub, sup, path), checker.lossy)


def check_sequence(sub: tuple[CandidType, ...], sup: tuple[CandidType, ...], label: str) -> Fit:
    """Argument or result sequences (tuple-like records): extra `sub` values are ignored, missing ones
    must be optional on the `sup` side."""
    checker = _Checker()
    for index, wanted in enumerate(sup):
        path = (f"{label} {index + 1}",)
        if index < len(sub):
            mismatch = checker.check(sub[index], wanted, path)
        else:
            mismatch = (
                None if null_fits(wanted) else Mismatch(path, f"none given, {describe(wanted)} expected")
            )
        if mismatch is not None:
            return Fit(mismatch, checker.lossy)
    return Fit(None, checker.lossy)


def coerce(value: Any, wire: CandidType, expected: CandidType) -> Any:
    """A value decoded by its wire type, as a plain value of the expected type (see pipeline.ic.candid
    for the plain forms); raises CoercionError where it does not fit."""
    wire, expected = _base(wire), _base(expected)
    if isinstance(expected, _ic.ReservedClass):
        return None
    if isinstance(expected, _ic.OptClass):
        return _coerce_opt(value, wire, expected)
    if isinstance(expected, _ic.RecordClass):
        return _coerce_record(value, wire, expected)
    if isinstance(expected, _ic.VariantClass):
        return _coerce_variant(value, wire, expected)
    if isinstance(expected, _ic.VecClass):
        if not isinstance(wire, _ic.VecClass):
            raise CoercionError(f"expected {describe(expected)}, got {describe(wire)}")
        if isinstance(value, bytes | bytearray):
            if not expected._is_blob:
                raise CoercionError(f"expected {describe(expected)}, got a blob")
            return bytes(value)
        return [coerce(item, wire._type, expected._type) for item in value]
    if isinstance(expected, _ic.PrincipalClass | _ic.FuncClass | _ic.ServiceClass):
        if not isinstance(wire, type(expected)) and not isinstance(wire, _ic.ServiceClass):
            raise CoercionError(f"expected {describe(expected)}, got {describe(wire)}")
        return value.to_str() if hasattr(value, "to_str") else value
    if not _primitive_fits(wire, expected):
        raise CoercionError(f"expected {describe(expected)}, got {describe(wire)}")
    return value


def describe(t: CandidType, depth: int = 2) -> str:
    """Short Candid text of a type (field names where known, `#hash` otherwise)."""
    t = _base(t)
    if isinstance(t, _ic.OptClass):
        return f"opt {describe(t._type, depth)}"
    if isinstance(t, _ic.VecClass):
        return "blob" if t._is_blob else f"vec {describe(t._type, depth)}"
    if isinstance(t, _ic.RecordClass | _ic.VariantClass):
        keyword = "record" if isinstance(t, _ic.RecordClass) else "variant"
        if depth <= 0:
            return f"{keyword} {{...}}"
        parts = []
        for _, (name, inner) in sorted(t._field_map.items()):
            inner = _base(inner)
            if keyword == "variant" and isinstance(inner, _ic.NullClass):
                parts.append(_label(name))
            else:
                parts.append(f"{_label(name)} : {describe(inner, depth - 1)}")
        return f"{keyword} {{ {'; '.join(parts)} }}"
    if isinstance(t, _ic.FuncClass):
        return "func"
    if isinstance(t, _ic.ServiceClass):
        return "service"
    return str(t.name)


# ---- the relation --------------------------------------------------------------------------------


class _Checker:
    def __init__(self) -> None:
        self.assumed: set[tuple[int, int]] = set()  # pairs under check: recursive types hold coinductively
        self.lossy: list[Mismatch] = []

    def check(self, sub: CandidType, sup: CandidType, path: tuple[str, ...]) -> Mismatch | None:
        sub, sup = _base(sub), _base(sup)
        key = (id(sub), id(sup))
        if key in self.assumed:
            return None
        self.assumed.add(key)
        mismatch = self._check(sub, sup, path)
        if mismatch is not None:
            self.assumed.discard(key)
        return mismatch

    def _check(self, sub: Any, sup: Any, path: tuple[str, ...]) -> Mismatch | None:
        if isinstance(sup, _ic.ReservedClass) or isinstance(sub, _ic.EmptyClass):
            return None
        if isinstance(sup, _ic.OptClass):
            return self._into_opt(sub, sup, path)
        if isinstance(sup, _ic.RecordClass):
            return self._record(sub, sup, path)
        if isinstance(sup, _ic.VariantClass):
            return self._variant(sub, sup, path)
        if isinstance(sup, _ic.VecClass):
            if not isinstance(sub, _ic.VecClass):
                return _differs(path, sub, sup)
            return self.check(sub._type, sup._type, path)
        if isinstance(sup, _ic.FuncClass):
            return self._func(sub, sup, path)
        if isinstance(sup, _ic.ServiceClass):
            if not isinstance(sub, _ic.ServiceClass):
                return _differs(path, sub, sup)
            return self._methods(sub, sup, path)
        if isinstance(sup, _ic.PrincipalClass):
            ok = isinstance(sub, _ic.PrincipalClass | _ic.ServiceClass)
            return None if ok else _differs(path, sub, sup)
        return None if _primitive_fits(sub, sup) else _differs(path, sub, sup)

    def _into_opt(self, sub: CandidType, sup: Any, path: tuple[str, ...]) -> Mismatch | None:
        if isinstance(sub, _ic.NullClass | _ic.ReservedClass):
            return None
        inner = self.check(sub._type if isinstance(sub, _ic.OptClass) else sub, sup._type, path)
        if inner is not None:
            self.lossy.append(Mismatch(inner.path, f"{inner.reason}; Candid reads it as null"))
        return None

    def _record(self, sub: CandidType, sup: Any, path: tuple[str, ...]) -> Mismatch | None:
        if not isinstance(sub, _ic.RecordClass):
            return _differs(path, sub, sup)
        for h, (name, wanted) in sorted(sup._field_map.items()):
            where = (*path, _label(name))
            if h in sub._field_map:
                mismatch = self.check(sub._field_map[h][1], wanted, where)
                if mismatch is not None:
                    return mismatch
            elif not null_fits(wanted):
                return Mismatch(where, f"field {_label(name)} : {describe(wanted)} is missing")
        return None

    def _variant(self, sub: CandidType, sup: Any, path: tuple[str, ...]) -> Mismatch | None:
        if not isinstance(sub, _ic.VariantClass):
            return _differs(path, sub, sup)
        for h, (name, have) in sorted(sub._field_map.items()):
            where = (*path, _label(name))
            if h not in sup._field_map:
                known = ", ".join(sorted(_label(n) for n, _t in sup._field_map.values()))
                return Mismatch(where, f"case {_label(name)} is not one of {known}")
            mismatch = self.check(have, sup._field_map[h][1], where)
            if mismatch is not None:
                return mismatch
        return None

    def _func(self, sub: CandidType, sup: Any, path: tuple[str, ...]) -> Mismatch | None:
        if not isinstance(sub, _ic.FuncClass):
            return _differs(path, sub, sup)
        if sorted(sub.modes) != sorted(sup.modes):
            return Mismatch(path, f"annotations {sorted(sub.modes)} differ from {sorted(sup.modes)}")
        for fit in (
            check_sequence(tuple(sup.args), tuple(sub.args), "argument"),
            check_sequence(tuple(sub.rets), tuple(sup.rets), "result"),
        ):
            self.lossy += fit.lossy
            if fit.mismatch is not None:
                return Mismatch((*path, *fit.mismatch.path), fit.mismatch.reason)
        return None

    def _methods(self, sub: Any, sup: Any, path: tuple[str, ...]) -> Mismatch | None:
        for name, wanted in sorted(sup._methods.items()):
            if name not in sub._methods:
                return Mismatch((*path, name), f"method {name} is missing")
            mismatch = self.check(sub._methods[name], wanted, (*path, name))
            if mismatch is not None:
                return mismatch
        return None


def _differs(path: tuple[str, ...], sub: CandidType, sup: CandidType) -> Mismatch:
    return Mismatch(path, f"expected {describe(sup)}, the canister has {describe(sub)}")


def _primitive_fits(sub: CandidType, sup: CandidType) -> bool:
    if isinstance(sub, _ic.ConstructType) or isinstance(sup, _ic.ConstructType):
        return False
    return bool(sub.name == sup.name or (sub.name == "nat" and sup.name == "int"))


def null_fits(t: CandidType) -> bool:
    """null <: t: t is null, an option or reserved (a missing field or argument reads as null)."""
    return isinstance(_base(t), _ic.NullClass | _ic.OptClass | _ic.ReservedClass)


def _base(t: CandidType) -> Any:
    return t.get_type() if isinstance(t, _ic.RecClass) else t


def _label(name: Any) -> str:
    text = str(name)
    return f"#{text}" if text.isdigit() and int(text) > 1000 else text


# ---- coercion ------------------------------------------------------------------------------------


def _coerce_opt(value: Any, wire: Any, expected: Any) -> Any:
    if isinstance(wire, _ic.NullClass | _ic.ReservedClass):
        return None
    if isinstance(wire, _ic.OptClass):
        if not value:
            return None
        value, wire = value[0], _base(wire._type)
    try:
        return coerce(value, wire, expected._type)
    except CoercionError:
        return None  # Candid: a value that does not fit an option reads as null


def _coerce_record(value: Any, wire: Any, expected: Any) -> Any:
    if not isinstance(wire, _ic.RecordClass):
        raise CoercionError(f"expected {describe(expected)}, got {describe(wire)}")
    out: dict[str, Any] = {}
    for h, (name, wanted) in sorted(expected._field_map.items()):
        if h in wire._field_map:
            try:
                out[str(name)] = coerce(_field_value(value, h, wire), wire._field_map[h][1], wanted)
            except CoercionError as err:
                raise CoercionError(f"{_label(name)}: {err}") from None
        elif null_fits(wanted):
            out[str(name)] = None
        else:
            raise CoercionError(f"field {_label(name)} is missing")
    if expected.tryAsTuple():
        return [out[str(i)] for i in range(len(out))]
    return out


def _field_value(value: Any, h: int, wire: Any) -> Any:
    if isinstance(value, list):  # the decoder gives tuple-like records as lists
        return value[h]
    name = wire._field_map[h][0]
    return value[name] if name in value else value[str(h)]


def _coerce_variant(value: Any, wire: Any, expected: Any) -> Any:
    if not isinstance(wire, _ic.VariantClass) or not isinstance(value, dict) or len(value) != 1:
        raise CoercionError(f"expected {describe(expected)}, got {describe(wire)}")
    ((tag, payload),) = value.items()
    h = _ic.get_field_hash(tag)
    if h not in expected._field_map:
        raise CoercionError(f"case {_label(tag)} is not one of {describe(expected, 1)}")
    name, wanted = expected._field_map[h]
    try:
        return {str(name): coerce(payload, wire._field_map[h][1], wanted)}
    except CoercionError as err:
        raise CoercionError(f"{name}: {err}") from None
