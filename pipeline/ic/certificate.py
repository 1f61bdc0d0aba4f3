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
BLS_SIGNATURE_BYTES = 48
MAX_PRINCIPAL_BYTES = 29
MAX_CERTIFICATE_BYTES = 4 * 1024 * 1024  # a reply (<= 2 MiB) plus the tree around it
MAX_TREE_DEPTH = 256
MAX_TREE_NODES = 200_000
MAX_LEB128_BYTES = 10  # a u64
MAX_KEY_DER_BYTES = 512
_EMPTY, _FORK, _LABELED, _LEAF, _PRUNED = range(5)
_TREE_ARITY = {_EMPTY: 1, _FORK: 3, _LABELED: 3, _LEAF: 2, _PRUNED: 2}


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
    max_age_ns: int | None = DEFAULT_MAX_AGE_NS,
) -> Certificate:
    """The parsed certificate once its signature chain, canister range and time check out.

    `max_age_ns=None` skips the time check (the caller checks it, e.g. against a corrected clock).
    """
    certificate = parse_certificate(certificate_cbor, "certificate")
    _check_signature(
        certificate, signing_key(certificate, effective_canister_id, root_key_der), "certificate"
    )
    if max_age_ns is not None:
        check_time(certificate, now_ns if now_ns is not None else time.time_ns(), max_age_ns)
    return certificate


def signing_key(certificate: Certificate, effective_canister_id: bytes, root_key_der: bytes) -> bytes:
    """The key that must have signed `certificate`: the root key, or the subnet key its delegation proves."""
    if certificate.delegation is None:
        return root_key_der
    parent = parse_certificate(certificate.delegation["certificate"], "delegation certificate")
    if parent.delegation is not None:
        raise CertificateError("certificate delegation has a delegation itself; refusing it")
    _check_signature(parent, root_key_der, "delegation certificate")
    return _delegated_subnet_key(parent, certificate.delegation["subnet_id"], effective_canister_id)


def subnet_of(certificate: Certificate, root_key_der: bytes) -> bytes | None:
    """The id of the subnet that signed a verified certificate: its delegation's subnet, or (no
    delegation: the root key signed) the subnet whose public key is the root key; None when not shown."""
    if certificate.delegation is not None:
        return certificate.delegation["subnet_id"]
    subnets = certificate.lookup_tree([b"subnet"])
    for path in certificate.list_paths(subnets) if subnets is not None else []:
        if path[1:] == [b"public_key"] and certificate.lookup([b"subnet", *path]) == root_key_der:
            return path[0]
    return None


def _delegated_subnet_key(parent: Certificate, subnet_id: bytes, canister_id: bytes) -> bytes:
    """The subnet's key, once the root-signed parent shows the canister is on that subnet."""
    ranges = _canister_ranges(parent, subnet_id)
    if not any(low <= canister_id <= high for low, high in ranges):
        raise CertificateError(
            "certificate delegation does not cover this canister (not in the subnet's ranges)"
        )
    key = parent.lookup([b"subnet", subnet_id, b"public_key"])
    if key is None or len(key) > MAX_KEY_DER_BYTES:
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
    ranges = []
    for data in encoded:
        try:
            decoded = plain(cbor2.loads(data))
        except Exception as err:
            raise CertificateError(f"delegation certificate has malformed canister ranges: {err}") from None
        if not isinstance(decoded, list) or not all(_is_range(r) for r in decoded):
            raise CertificateError("delegation certificate has malformed canister ranges (not pairs of ids)")
        ranges += [(low, high) for low, high in decoded]
    return ranges


def _is_range(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(end, bytes) and len(end) <= MAX_PRINCIPAL_BYTES for end in value)
    )


def parse_certificate(data: Any, what: str) -> Certificate:
    """A certificate whose CBOR has the shape the interface specification gives, else CertificateError.

    Checked before icp-py-core's `Certificate` touches it: that code calls `bytes()` on fields (an
    integer there allocates that many bytes) and indexes nodes without looking at their types.
    """
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_CERTIFICATE_BYTES:
        raise CertificateError(f"malformed {what}: expected at most {MAX_CERTIFICATE_BYTES} bytes of CBOR")
    try:
        decoded = plain(cbor2.loads(bytes(data)))
    except Exception as err:  # cbor2 raises many types on garbage (and RecursionError on deep nesting)
        raise CertificateError(f"malformed {what}: not CBOR ({type(err).__name__})") from None
    if not isinstance(decoded, dict) or not isinstance(decoded.get("tree"), list):
        raise CertificateError(f"malformed {what}: expected a map with a hash tree")
    signature = decoded.get("signature")
    if not isinstance(signature, bytes) or len(signature) != BLS_SIGNATURE_BYTES:
        raise CertificateError(f"malformed {what}: signature must be {BLS_SIGNATURE_BYTES} bytes")
    delegation = decoded.get("delegation")
    if delegation is not None and not (
        isinstance(delegation, dict)
        and isinstance(delegation.get("subnet_id"), bytes)
        and len(delegation["subnet_id"]) <= MAX_PRINCIPAL_BYTES
        and isinstance(delegation.get("certificate"), bytes)
    ):
        raise CertificateError(
            f"malformed {what}: delegation must hold a subnet_id and a certificate (bytes)"
        )
    check_tree(decoded["tree"], what)
    return Certificate(decoded)


def check_tree(tree: Any, what: str) -> None:
    """Every node is one of the five hash-tree nodes with bytes where bytes belong; depth bounded."""
    stack = [(tree, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_TREE_DEPTH or nodes > MAX_TREE_NODES:
            raise CertificateError(f"malformed {what}: hash tree deeper or larger than any replica makes")
        if not isinstance(node, list) or not node or type(node[0]) is not int:
            raise CertificateError(f"malformed {what}: hash tree node {_show(node)} is not a tagged list")
        tag, arity = node[0], _TREE_ARITY.get(node[0])
        if arity is None or len(node) != arity:
            raise CertificateError(f"malformed {what}: hash tree node {_show(node)} has the wrong shape")
        if tag == _FORK:
            stack += [(node[1], depth + 1), (node[2], depth + 1)]
        elif tag == _LABELED:
            if not isinstance(node[1], bytes):
                raise CertificateError(f"malformed {what}: a hash tree label is not bytes")
            stack.append((node[2], depth + 1))
        elif tag in (_LEAF, _PRUNED) and not isinstance(node[1], bytes):
            raise CertificateError(f"malformed {what}: a hash tree leaf or digest is not bytes")
        elif tag == _PRUNED and len(node[1]) != 32:
            raise CertificateError(f"malformed {what}: a pruned hash tree node does not hold 32 bytes")


def lookup_nat(certificate: Certificate, path: list[bytes], what: str) -> int | None:
    raw = certificate.lookup(path)
    if raw is None:
        return None
    try:
        return LEB128.decode_u_bytes(bytes(raw[:MAX_LEB128_BYTES]))
    except Exception:
        raise CertificateError(f"certificate holds a malformed {what} (expected a LEB128 number)") from None


def lookup_text(certificate: Certificate, path: list[bytes]) -> str | None:
    raw = certificate.lookup(path)
    return None if raw is None else bytes(raw).decode("utf-8", "replace")


def certificate_time(certificate: Certificate) -> int:
    cert_time = lookup_nat(certificate, [b"time"], "time")
    if cert_time is None:
        raise CertificateError("certificate has no time")
    return cert_time


def _show(node: Any) -> str:
    return repr(node)[:40]


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


def check_time(certificate: Certificate, now_ns: int, max_age_ns: int) -> None:
    cert_time = certificate_time(certificate)
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
