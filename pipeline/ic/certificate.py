"""Certificate verification with an explicit root key.

icp-py-core verifies against its module-global mainnet key whatever `Agent(root_key=...)` says, and
reads only the sharded canister-range encoding in delegations, so we keep its hash-tree code
(`Certificate`: lookups, root hash) and do the signature, delegation and freshness checks here, with
the root key each client was given.
"""

from __future__ import annotations

import time
from typing import Any

import cbor2
from icp_candid.candid import LEB128
from icp_certificate.certificate import Certificate, extract_der

from pipeline.ic import bls
from pipeline.ic.errors import CertificateError

STATE_ROOT_DOMAIN = b"\x0dic-state-root"
DEFAULT_MAX_AGE_NS = 5 * 60 * 1_000_000_000


def plain(value: Any) -> Any:
    """cbor2 6 may decode maps as frozendict and arrays as tuples; make them dict and list."""
    if isinstance(value, (bytes, str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "items"):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, cbor2.CBORTag):
        return plain(value.value)
    return value


def verify_certificate(
    certificate_cbor: bytes,
    effective_canister_id: bytes,
    root_key_der: bytes,
    *,
    now_ns: int | None = None,
    max_age_ns: int = DEFAULT_MAX_AGE_NS,
) -> Certificate:
    """The parsed certificate once its signature chain, canister range and time check out."""
    certificate = _parse(certificate_cbor, "certificate")
    if certificate.delegation is None:
        signing_key = root_key_der
    else:
        parent = _parse(bytes(certificate.delegation["certificate"]), "delegation certificate")
        if parent.delegation is not None:
            raise CertificateError("certificate delegation has a delegation itself; refusing it")
        _check_signature(parent, root_key_der, "delegation certificate")
        subnet_id = bytes(certificate.delegation["subnet_id"])
        signing_key = _delegated_subnet_key(parent, subnet_id, effective_canister_id)
    _check_signature(certificate, signing_key, "certificate")
    _check_time(certificate, now_ns if now_ns is not None else time.time_ns(), max_age_ns)
    return certificate


def _delegated_subnet_key(parent: Certificate, subnet_id: bytes, canister_id: bytes) -> bytes:
    """The subnet's key, once the root-signed parent shows the canister is on that subnet."""
    ranges = _canister_ranges(parent, subnet_id)
    if not any(low <= canister_id <= high for low, high in ranges):
        raise CertificateError(
            "certificate delegation does not cover this canister (not in the subnet's ranges)"
        )
    key = parent.lookup([b"subnet", subnet_id, b"public_key"])
    if key is None:
        raise CertificateError("delegation certificate lacks the subnet's public key")
    return bytes(key)


def _canister_ranges(parent: Certificate, subnet_id: bytes) -> list[tuple[bytes, bytes]]:
    """Both encodings replicas use: /subnet/<id>/canister_ranges (one list) and
    /canister_ranges/<id>/<shard> (lists per shard; icp-py-core 2.3.1 reads only these)."""
    encoded = []
    flat = parent.lookup([b"subnet", subnet_id, b"canister_ranges"])
    if flat is not None:
        encoded.append(bytes(flat))
    shards = parent.lookup_tree([b"canister_ranges", subnet_id])
    if shards is not None:
        for path in parent.list_paths(shards):
            leaf = parent.lookup([b"canister_ranges", subnet_id, *path])
            if leaf is not None:
                encoded.append(bytes(leaf))
    if not encoded:
        raise CertificateError("delegation certificate lists no canister ranges for its subnet")
    try:
        return [(bytes(low), bytes(high)) for data in encoded for low, high in cbor2.loads(data)]
    except (ValueError, TypeError, cbor2.CBORDecodeError) as err:
        raise CertificateError(f"delegation certificate has malformed canister ranges: {err}") from None


def _parse(data: bytes, what: str) -> Certificate:
    try:
        return Certificate(plain(cbor2.loads(data)))
    except Exception as err:
        raise CertificateError(f"malformed {what}: {err}") from None


def _check_signature(certificate: Certificate, key_der: bytes, what: str) -> None:
    try:
        public_key = extract_der(bytes(key_der))
        message = STATE_ROOT_DOMAIN + certificate.root_hash()
    except (ValueError, TypeError, RuntimeError, IndexError) as err:
        raise CertificateError(f"malformed {what}: {err}") from None
    if certificate.signature is None or not bls.verify_signature(certificate.signature, message, public_key):
        raise CertificateError(
            f"{what} signature does not verify against the root key",
            hint="the replica is not the network you think, or the answer was tampered with",
        )


def _check_time(certificate: Certificate, now_ns: int, max_age_ns: int) -> None:
    raw = certificate.lookup([b"time"])
    if raw is None:
        raise CertificateError("certificate has no time")
    cert_time = LEB128.decode_u_bytes(bytes(raw))
    if now_ns - cert_time > max_age_ns:
        raise CertificateError(
            f"certificate is stale: made {(now_ns - cert_time) / 1e9:.0f} s ago",
            hint="the replica is lagging or this machine's clock is wrong",
        )
    if cert_time - now_ns > max_age_ns:
        raise CertificateError(
            f"certificate is from {(cert_time - now_ns) / 1e9:.0f} s in the future",
            hint="this machine's clock is wrong",
        )
