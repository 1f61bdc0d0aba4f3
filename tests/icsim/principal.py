"""Principal ids: textual form and the kinds the emulator uses."""

from __future__ import annotations

import base64
import hashlib
import zlib

ANONYMOUS = b"\x04"
SELF_AUTHENTICATING_SUFFIX = b"\x02"
MANAGEMENT_CANISTER = b""


def to_text(raw: bytes) -> str:
    checksum = zlib.crc32(raw).to_bytes(4, "big")
    encoded = base64.b32encode(checksum + raw).decode().lower().rstrip("=")
    return "-".join(encoded[i : i + 5] for i in range(0, len(encoded), 5))


def from_text(text: str) -> bytes:
    compact = text.replace("-", "").upper()
    padded = compact + "=" * (-len(compact) % 8)
    try:
        decoded = base64.b32decode(padded)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a principal: {exc}") from exc
    raw = decoded[4:]
    if len(decoded) < 4 or to_text(raw) != text:
        raise ValueError(f"{text!r} is not a principal (bad checksum or spelling)")
    return raw


def self_authenticating(der_public_key: bytes) -> bytes:
    return hashlib.sha224(der_public_key).digest() + SELF_AUTHENTICATING_SUFFIX


def canister_id(index: int) -> bytes:
    """Canister ids as the replica allocates them: a big-endian counter then 0x01 0x01."""
    return index.to_bytes(8, "big") + b"\x01\x01"
