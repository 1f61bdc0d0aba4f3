"""Representation-independent hash of request contents (the request id)."""

from __future__ import annotations

import hashlib
from typing import Any

from tests.icsim.candid import leb128

REQUEST_DOMAIN = b"\x0aic-request"


def hash_value(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(value)).digest()
    if isinstance(value, str):
        return hashlib.sha256(value.encode()).digest()
    if isinstance(value, bool):
        raise TypeError("booleans have no representation-independent hash")
    if isinstance(value, int):
        return hashlib.sha256(leb128(value)).digest()
    if isinstance(value, (list, tuple)):
        return hashlib.sha256(b"".join(hash_value(v) for v in value)).digest()
    if isinstance(value, dict):
        return request_id(value)
    raise TypeError(f"cannot hash a {type(value).__name__} in a request")


def request_id(content: dict[Any, Any]) -> bytes:
    pairs = sorted(hashlib.sha256(_key(k)).digest() + hash_value(v) for k, v in content.items())
    return hashlib.sha256(b"".join(pairs)).digest()


def _key(key: Any) -> bytes:
    return key.encode() if isinstance(key, str) else bytes(key)
