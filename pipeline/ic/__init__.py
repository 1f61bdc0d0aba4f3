"""Talking to the Internet Computer: networks, identities, and a verified, exactly-once agent adapter."""

from pipeline.ic.client import CallResult, IcClient, RequestStatus, RetryPolicy, SignedCall
from pipeline.ic.identity import IcIdentity, load_identity
from pipeline.ic.network import Network, resolve_canister, resolve_network

__all__ = [
    "CallResult",
    "IcClient",
    "IcIdentity",
    "Network",
    "RequestStatus",
    "RetryPolicy",
    "SignedCall",
    "load_identity",
    "resolve_canister",
    "resolve_network",
]
