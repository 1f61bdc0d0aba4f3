"""The replica node's Ed25519 key, which signs query responses (verified by agents that ask for it)."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.icsim.principal import self_authenticating
from tests.icsim.requestid import request_id

RESPONSE_DOMAIN = b"\x0bic-response"


class NodeKey:
    def __init__(self, seed: bytes = b"icsim node key") -> None:
        self._key = ed25519.Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())
        self.der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.node_id = self_authenticating(self.der)

    def sign_query_response(
        self, response: dict[str, Any], query_request_id: bytes, *, as_node: bytes | None = None
    ) -> dict[str, Any]:
        """The response with a `signatures` entry over its representation-independent hash
        (`as_node`: claim to be that node, as a forger would)."""
        timestamp = time.time_ns()
        signable = {k: v for k, v in response.items() if k != "signatures"}
        signable.update({"request_id": query_request_id, "timestamp": timestamp})
        signature = self._key.sign(RESPONSE_DOMAIN + request_id(signable))
        entry = {"timestamp": timestamp, "signature": signature, "identity": as_node or self.node_id}
        return {**response, "signatures": [entry]}


FORGER = NodeKey(b"icsim forger: not a node of any subnet")
