"""Profile call templates to Candid bytes, and canister replies to plain answers.

A template is the TOML value of a call's `args`: the string "{name}" becomes the variable `name` (any
type: bytes, int, list), "{*name}" inside a list splices the list `name` into it, and other strings have
their `{name}` parts formatted in. Types come from the kind's service.did, so templates stay untyped.
"""

from __future__ import annotations

import re
from typing import Any

from icp_candid.candid import get_field_hash, idl_hash

from pipeline.errors import PrepError
from pipeline.ic import candid, subtyping
from pipeline.ic.candid_wire import decode_typed
from pipeline.targets.profile import CallSpec, TargetProfile

_WHOLE = re.compile(r"^\{(\w+)\}$")
_SPLICE = re.compile(r"^\{\*(\w+)\}$")
_PART = re.compile(r"\{(\w+)\}")
_ERR_HASH = idl_hash("Err")


class CanisterRefused(PrepError):
    """The canister answered a call with `Err` (or an error text where none was expected)."""


def render(template: Any, variables: dict[str, Any]) -> Any:
    """Fills a template with variables (see the module docstring)."""
    if isinstance(template, str):
        whole = _WHOLE.match(template)
        if whole:
            return _variable(variables, whole.group(1))
        return _PART.sub(lambda m: str(_variable(variables, m.group(1))), template)
    if isinstance(template, dict):
        return {key: render(value, variables) for key, value in template.items()}
    if isinstance(template, list | tuple):
        out: list[Any] = []
        for item in template:
            splice = _SPLICE.match(item) if isinstance(item, str) else None
            if splice:
                out.extend(_variable(variables, splice.group(1)))
            else:
                out.append(render(item, variables))
        return out
    return template


def _variable(variables: dict[str, Any], name: str) -> Any:
    if name not in variables:
        raise PrepError(
            f"profile call template uses {{{name}}}, which is not set",
            hint=f"set variables: {', '.join(sorted(variables))}",
        )
    return variables[name]


def encode_args(profile: TargetProfile, spec: CallSpec, variables: dict[str, Any]) -> bytes:
    assert profile.service is not None
    types = profile.service.methods[spec.method].args
    return candid.encode(list(types), render(list(spec.args), variables))


def interpret_reply(profile: TargetProfile, spec: CallSpec, data: bytes, *, pick_value: bool = True) -> Any:
    """Decodes a reply, turns `Err` into CanisterRefused, unwraps `Ok` and picks `spec.value`.

    The reply is read by its own type table, then coerced by Candid's rules to the result types in
    service.did. A first value that is a variant saying `Err` is a failure whatever service.did
    declares: some canisters' published .did differs from what their code returns (gpt2's store/load
    steps say `()`, its setup_tokenizer `opt text`, and both really reply `variant { Ok; Err : text }`).
    """
    assert profile.service is not None
    rets = profile.service.methods[spec.method].rets
    values = read_reply(spec.method, data, rets)
    value = values[0] if values else None
    value = _unwrap_ok(value)
    if spec.error_when_some:
        text = value[0] if isinstance(value, list) and value else value
        if text:
            raise CanisterRefused(f"{spec.method} failed: the canister says {text!r}")
        return None
    return pick(value, spec.value) if spec.value and pick_value else value


def read_reply(method: str, data: bytes, rets: tuple[candid.CandidType, ...]) -> list[Any]:
    """The reply's values at the expected types; an `Err` on the wire raises CanisterRefused."""
    typed = decode_typed(data)
    if typed and _says_err(typed[0][1]):
        raise CanisterRefused(f"{method} failed: the canister says {_err_text(typed[0], rets)}")
    values = []
    for index, wanted in enumerate(rets):
        if index >= len(typed):
            if not subtyping.null_fits(wanted):
                raise PrepError(f"{method} replied with {len(typed)} value(s), prep expects {len(rets)}")
            values.append(None)
            continue
        wire, value = typed[index]
        try:
            values.append(subtyping.coerce(value, wire, wanted))
        except subtyping.CoercionError as err:
            raise PrepError(
                f"{method} replied with a value prep cannot read: {err}",
                hint="the canister's interface differs from the kind's service.did: see prep canister info",
            ) from None
    return values


def _says_err(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and get_field_hash(next(iter(value))) == _ERR_HASH


def _err_text(first: tuple[candid.CandidType, Any], rets: tuple[candid.CandidType, ...]) -> str:
    """The Err payload, with field names where the expected type knows them."""
    wire, value = first
    if rets:
        try:
            return _describe(subtyping.coerce(value, wire, rets[0])["Err"])
        except (subtyping.CoercionError, KeyError, TypeError):
            pass
    return _describe(next(iter(value.values())))


def pick(value: Any, path: str) -> Any:
    """Follows a dotted path of record fields; wire-decoded records are keyed by field hash."""
    for name in path.split("."):
        value = _field(value, name)
    return value


def _field(value: Any, name: str) -> Any:
    if isinstance(value, dict):
        for key in (name, str(idl_hash(name))):
            if key in value:
                return value[key]
    raise PrepError(f"canister reply has no field {name!r}: {_short(value)}")


def _unwrap_ok(value: Any) -> Any:
    """`variant { Ok : x; ... }` gives x (read_reply already turned an Err into CanisterRefused)."""
    if isinstance(value, dict) and len(value) == 1 and "Ok" in value:
        return value["Ok"]
    return value


def _describe(err: Any) -> str:
    if isinstance(err, dict):
        for name in ("error", "msg", "Other", "StatusCode", "output"):
            try:
                found = _field(err, name)
            except PrepError:
                continue
            if found not in ("", None):
                return f"{name}: {found}" if name == "StatusCode" else repr(found)
        if len(err) == 1:
            ((tag, payload),) = err.items()
            return f"{tag}" if payload is None else f"{tag}: {_describe(payload)}"
    return _short(err)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."
