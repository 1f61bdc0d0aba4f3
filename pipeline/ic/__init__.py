"""Talking to the Internet Computer: networks, identities, and a verified, exactly-once agent adapter.

The names below load on first use: `pipeline.ic.candid` (which recipes and canister kinds read) must not
pull in the agent and httpx behind `pipeline.ic.client`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CallResult": "pipeline.ic.client",
    "IcClient": "pipeline.ic.client",
    "RequestStatus": "pipeline.ic.client",
    "RetryPolicy": "pipeline.ic.client",
    "SignedCall": "pipeline.ic.client",
    "IcIdentity": "pipeline.ic.identity",
    "load_identity": "pipeline.ic.identity",
    "Network": "pipeline.ic.network",
    "resolve_canister": "pipeline.ic.network",
    "resolve_network": "pipeline.ic.network",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
