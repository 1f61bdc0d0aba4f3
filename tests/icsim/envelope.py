"""Signed request envelopes: parse, check sender, signature and expiry, compute the request id."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tests.icsim.principal import ANONYMOUS, self_authenticating, to_text
from tests.icsim.requestid import REQUEST_DOMAIN, request_id

MAX_EXPIRY_AHEAD_NS = 5 * 60 * 1_000_000_000
EXPIRY_SKEW_NS = 30 * 1_000_000_000


class EnvelopeError(Exception):
    """A request the replica refuses at the HTTP layer (status + plain-text body)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Envelope:
    request_type: str
    content: dict[str, Any]
    request_id: bytes
    sender: bytes
    ingress_expiry: int

    @property
    def canister_id(self) -> bytes:
        return bytes(self.content.get("canister_id", b""))

    @property
    def method_name(self) -> str:
        return str(self.content.get("method_name", ""))

    @property
    def arg(self) -> bytes:
        return bytes(self.content.get("arg", b""))


def parse(body: bytes, expected_type: str) -> Envelope:
    try:
        envelope = _plain(cbor2.loads(body))
    except Exception as exc:
        raise EnvelopeError(400, f"Could not parse body as {expected_type} request: {exc}") from exc
    if not isinstance(envelope, dict) or not isinstance(envelope.get("content"), dict):
        raise EnvelopeError(400, f"Could not parse body as {expected_type} request: missing content map")
    content = envelope["content"]
    request_type = content.get("request_type")
    if request_type != expected_type:
        raise EnvelopeError(400, f"Expected a {expected_type} request, got request_type {request_type!r}")
    for field in ("sender", "ingress_expiry") + _required_fields(expected_type):
        if field not in content:
            raise EnvelopeError(
                400, f"Could not parse body as {expected_type} request: missing field {field}"
            )
    if "sender_delegation" in envelope:
        raise EnvelopeError(400, "Delegations are not supported by icsim")
    rid = request_id(content)
    sender = bytes(content["sender"])
    _check_signature(envelope, sender, rid)
    expiry = content["ingress_expiry"]
    if not isinstance(expiry, int):
        raise EnvelopeError(400, "ingress_expiry must be a nat (nanoseconds since 1970)")
    _check_expiry(expiry)
    return Envelope(expected_type, content, rid, sender, expiry)


def _required_fields(request_type: str) -> tuple[str, ...]:
    if request_type == "read_state":
        return ("paths",)
    return ("canister_id", "method_name", "arg")


def _plain(value: Any) -> Any:
    """cbor2 6 hands back frozendicts and tuples under the self-describe tag; make them dicts and lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _check_signature(envelope: dict[str, Any], sender: bytes, rid: bytes) -> None:
    pubkey = envelope.get("sender_pubkey")
    signature = envelope.get("sender_sig")
    if sender == ANONYMOUS:
        if pubkey is not None or signature is not None:
            raise EnvelopeError(400, "Anonymous requests must not carry sender_pubkey or sender_sig")
        return
    if pubkey is None or signature is None:
        raise EnvelopeError(
            400, f"Request from {to_text(sender)} is not signed: sender_pubkey and sender_sig are required"
        )
    pubkey, signature = bytes(pubkey), bytes(signature)
    if self_authenticating(pubkey) != sender:
        raise EnvelopeError(
            400,
            f"Invalid signature: sender {to_text(sender)} does not match the public key "
            f"(principal {to_text(self_authenticating(pubkey))})",
        )
    try:
        key = load_der_public_key(pubkey)
    except ValueError as exc:
        raise EnvelopeError(400, f"Invalid signature: cannot parse sender_pubkey: {exc}") from exc
    message = REQUEST_DOMAIN + rid
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64:
            der_sig = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der_sig, message, ec.ECDSA(hashes.SHA256()))
        else:
            raise EnvelopeError(
                400, f"Invalid signature: unsupported key or signature length {len(signature)}"
            )
    except InvalidSignature as exc:
        raise EnvelopeError(400, f"Invalid signature: verification failed for request 0x{rid.hex()}") from exc


def _check_expiry(expiry: int) -> None:
    now = time.time_ns()
    if expiry < now:
        raise EnvelopeError(
            400,
            f"Invalid request expiry: ingress_expiry {expiry} is in the past (now {now}); sign a new request",
        )
    if expiry > now + MAX_EXPIRY_AHEAD_NS + EXPIRY_SKEW_NS:
        raise EnvelopeError(
            400,
            f"Invalid request expiry: ingress_expiry {expiry} is more than 5 minutes ahead of now {now}",
        )
