"""Reading a replica's answers as untrusted input: HTTP statuses, CBOR maps and certified statuses.

Every field is checked for its type before use, so a wrong shape ends in `MalformedReply` (or
`CertificateError`) naming the endpoint, never in a KeyError, a TypeError or a huge allocation.
"""

from __future__ import annotations

from typing import Any

import cbor2
from icp_certificate.certificate import Certificate
from icp_principal import Principal

from pipeline.ic.calls import CallResult, RequestStatus
from pipeline.ic.certificate import lookup_nat, lookup_text, plain
from pipeline.ic.errors import ExpiryRefused, MalformedReply, Overloaded, PermanentIcError, TransientIcError
from pipeline.ic.transport import WireResponse

MAX_PRINCIPALS = 1000
_KNOWN_STATUSES = ("unknown", "received", "processing", "replied", "rejected", "done")


def raise_for_http_status(response: WireResponse, where: str) -> None:
    status = response.status_code
    if status < 400:
        return
    text = response.text.strip()[:500] or response.reason_phrase
    if status in (429, 503):
        raise Overloaded(f"{where}: HTTP {status}: {text}")
    if status >= 500:
        raise TransientIcError(f"{where}: HTTP {status}: {text}")
    lowered = text.lower()
    if status == 400 and "expir" in lowered:
        raise ExpiryRefused(
            f"{where}: HTTP {status}: {text}", hint="the request expired or this machine's clock is off"
        )
    raise PermanentIcError(f"{where}: HTTP {status}: {text}", hint=_http_hint(status))


def _http_hint(status: int) -> str | None:
    if status == 404:
        return "no such canister on this network: check --canister and --network"
    if status == 403:
        return "the replica refused this identity or signature"
    if status == 413:
        return "the message is too large: use smaller chunks"
    return None


def decode_map(data: bytes, where: str) -> dict[str, Any]:
    try:
        value = plain(cbor2.loads(data))
    except Exception:  # cbor2 raises many types on garbage (and RecursionError on deep nesting)
        raise MalformedReply(f"{where} answered with something that is not CBOR: {data[:120]!r}") from None
    if not isinstance(value, dict):
        raise MalformedReply(f"{where} answered with unexpected CBOR: {type(value).__name__}")
    return value


def field(answer: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = answer.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        raise MalformedReply(
            f"{where}: the answer's {name!r} should be {kind.__name__}, not {show(value)}",
            hint="the replica or a node in between sent a malformed answer; try again or another node",
        )
    return value


def show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}" if value is not None else "missing"


def rejection(answer: dict[str, Any], where: str) -> CallResult:
    """The reject fields of a query or non-replicated answer (error_code optional)."""
    error_code = answer.get("error_code")
    if error_code is not None and not isinstance(error_code, str):
        raise MalformedReply(f"{where}: the answer's 'error_code' should be text, not {show(error_code)}")
    return CallResult(
        "rejected",
        reject_code=field(answer, "reject_code", int, where),
        reject_message=field(answer, "reject_message", str, where),
        error_code=error_code,
    )


def query_outcome(answer: dict[str, Any], where: str) -> bytes | CallResult:
    """A query answer's reply bytes, or its rejection."""
    status = answer.get("status")
    if status == "replied":
        return field(field(answer, "reply", dict, where), "arg", bytes, where)
    if status == "rejected":
        return rejection(answer, where)
    raise MalformedReply(f"{where}: unexpected answer status {show(status)}")


def status_from_certificate(certificate: Certificate, request_id: bytes) -> RequestStatus:
    base = [b"request_status", request_id]
    status = lookup_text(certificate, [*base, b"status"]) or "unknown"
    if status not in _KNOWN_STATUSES:
        raise MalformedReply(f"certified request status {status[:40]!r} is none the interface defines")
    if status == "replied":
        reply = certificate.lookup([*base, b"reply"])
        if reply is None:
            raise MalformedReply("the certificate says the call replied but holds no reply")
        return RequestStatus("replied", reply=reply)
    if status == "rejected":
        return RequestStatus(
            "rejected",
            reject_code=lookup_nat(certificate, [*base, b"reject_code"], "reject code"),
            reject_message=lookup_text(certificate, [*base, b"reject_message"]),
            error_code=lookup_text(certificate, [*base, b"error_code"]),
        )
    return RequestStatus(status)


def principals(raw: bytes, what: str) -> list[str]:
    """A certified CBOR list of principals (e.g. a canister's controllers) as text."""
    try:
        value = plain(cbor2.loads(raw))
    except Exception:
        value = None
    if (
        not isinstance(value, list)
        or len(value) > MAX_PRINCIPALS
        or not all(isinstance(p, bytes) and len(p) <= 29 for p in value)
    ):
        raise MalformedReply(f"the certified {what} are not a list of principals")
    return [Principal(p).to_str() for p in value]
