"""Query answers are verified like update answers: by the node signatures the interface spec defines.

A query is answered by one node, so its answer carries `signatures`: entries of (timestamp, Ed25519
signature, node id) over the representation-independent hash of the answer's fields, the timestamp
and the query's request id, prefixed by "\\x0bic-response". The node's key must be one of the keys the
subnet's certified state lists under /subnet/<subnet_id>/node/<node_id>/public_key.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_der_public_key
from icp_agent.agent import to_request_id
from icp_certificate.certificate import Certificate
from icp_principal import Principal

from pipeline.ic.errors import MalformedReply, QuerySignatureError

RESPONSE_DOMAIN = b"\x0bic-response"
ED25519_SIGNATURE_BYTES = 64
MAX_NODE_ID_BYTES = 29
MAX_SIGNATURES = 64
MAX_KEY_DER_BYTES = 512
# The answer fields a node signs (interface spec, "query call response signatures").
_SIGNED_FIELDS = ("status", "reply", "reject_code", "reject_message", "error_code")


@dataclass(frozen=True)
class NodeKeys:
    """The certified Ed25519 keys (DER) of one subnet's nodes, by node id."""

    subnet_id: bytes
    keys: dict[bytes, bytes]


def node_keys_from(certificate: Certificate, subnet_id: bytes, *, where: str) -> NodeKeys:
    """The node keys a verified certificate of a read_state of /subnet holds for `subnet_id`."""
    subnet = Principal(subnet_id).to_str()
    nodes = certificate.lookup_tree([b"subnet", subnet_id, b"node"])
    keys: dict[bytes, bytes] = {}
    if nodes is not None:
        for path in certificate.list_paths(nodes):
            if len(path) == 2 and path[1] == b"public_key":
                key = certificate.lookup([b"subnet", subnet_id, b"node", *path])
                if key is not None and len(key) <= MAX_KEY_DER_BYTES:
                    keys[path[0]] = key
    if not keys:
        raise QuerySignatureError(
            f"the certified state of {where} lists no node keys for subnet {subnet}",
            hint="query answers cannot be verified without them; is this an IC replica?",
        )
    return NodeKeys(subnet_id, keys)


def verify_query_signatures(
    answer: dict[str, Any],
    request_id: bytes,
    node_keys: NodeKeys,
    *,
    now_ns: int,
    max_age_ns: int,
    where: str,
) -> None:
    """Raises QuerySignatureError unless every signature is a fresh, valid one by a node of the subnet."""
    signatures = answer.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise QuerySignatureError(
            f"{where}: the answer carries no node signature",
            hint="a replica always signs query answers; something between you and it removed them",
        )
    if len(signatures) > MAX_SIGNATURES:
        raise MalformedReply(f"{where}: the answer carries {len(signatures)} signatures")
    signed = {name: answer[name] for name in _SIGNED_FIELDS if name in answer}
    for entry in signatures:
        timestamp, signature, node_id = _entry(entry, where)
        key = node_keys.keys.get(node_id)
        if key is None:
            raise QuerySignatureError(
                f"{where}: the answer is signed by {Principal(node_id).to_str()}, "
                f"which is not a node of subnet {Principal(node_keys.subnet_id).to_str()}",
                hint="the answer did not come from the canister's subnet; do not trust it",
            )
        if abs(now_ns - timestamp) > max_age_ns:
            raise QuerySignatureError(
                f"{where}: the answer's signature is {abs(now_ns - timestamp) / 1e9:.0f} s away from now",
                hint="a replayed answer, or this machine's clock is wrong",
            )
        message = RESPONSE_DOMAIN + to_request_id(
            {**signed, "timestamp": timestamp, "request_id": request_id}
        )
        if not _ed25519_valid(key, signature, message):
            raise QuerySignatureError(
                f"{where}: the node signature on the answer does not verify",
                hint="the answer was altered on its way, or forged; do not trust it",
            )


def _entry(entry: Any, where: str) -> tuple[int, bytes, bytes]:
    if isinstance(entry, dict):
        timestamp, signature, node_id = entry.get("timestamp"), entry.get("signature"), entry.get("identity")
        if (
            type(timestamp) is int
            and timestamp >= 0
            and isinstance(signature, bytes)
            and len(signature) == ED25519_SIGNATURE_BYTES
            and isinstance(node_id, bytes)
            and len(node_id) <= MAX_NODE_ID_BYTES
        ):
            return timestamp, signature, node_id
    raise QuerySignatureError(f"{where}: a node signature entry is malformed")


def _ed25519_valid(key_der: bytes, signature: bytes, message: bytes) -> bool:
    key = _ed25519_key(key_der)
    if key is None:
        return False
    try:
        key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


@lru_cache(maxsize=256)  # a subnet has a few dozen nodes; every read-back query meets the same keys
def _ed25519_key(key_der: bytes) -> Ed25519PublicKey | None:
    try:
        key = load_der_public_key(key_der)
    except (ValueError, TypeError):
        return None
    return key if isinstance(key, Ed25519PublicKey) else None
