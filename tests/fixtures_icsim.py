"""Fixtures of the IC replica emulator (tests/icsim)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import icp_certificate.certificate as icp_certificate
import pytest
from icp_agent import Agent, Client
from icp_identity import Identity

from pipeline.ic import candid
from pipeline.ic.client import IcClient
from pipeline.ic.identity import load_identity
from pipeline.ic.network import resolve_network
from tests.icsim import IcSim


@pytest.fixture
def icsim() -> Iterator[IcSim]:
    """A started emulator with instant blocks and no added latency."""
    with IcSim() as sim:
        yield sim


@pytest.fixture
def icsim_agent(icsim: IcSim, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Agent]:
    """Build icp-py-core agents for the emulator that verify certificates against its root key.

    `icsim_agent()` uses the dev identity (a controller); pass an `Identity` for another sender.
    """
    from pipeline.ic.bls import provide_blst_for_icp_py_core

    provide_blst_for_icp_py_core()
    # icp-py-core verifies against this module global, not Agent(root_key=...).
    monkeypatch.setattr(icp_certificate, "IC_ROOT_KEY", icsim.root_key)

    def make(identity: Identity | None = None) -> Agent:
        who = identity if identity is not None else Identity.from_pem(icsim.dev_identity_pem.read_text())
        return Agent(who, Client(icsim.url), root_key=icsim.root_key)

    return make


class IcsimCanister:
    """Calls one emulated canister through prep's IcClient (over icp-py-core), Candid over icp_candid."""

    def __init__(self, client: IcClient, canister_id: str) -> None:
        self.client, self.canister_id = client, canister_id

    def update(self, method: str, arg_types: list[str], values: list[Any], reply: list[str] | str) -> Any:
        raw = self.client.call(self.canister_id, method, candid.encode(arg_types, values))
        return _decoded(raw, reply)

    def query(self, method: str, arg_types: list[str], values: list[Any], reply: list[str] | str) -> Any:
        raw = self.client.query(self.canister_id, method, candid.encode(arg_types, values))
        return _decoded(raw, reply)


def _decoded(raw: bytes, reply: list[str] | str) -> Any:
    """One reply type gives the value; a list of types gives the list of values."""
    if isinstance(reply, str):
        return candid.decode(raw, [reply])[0]
    return candid.decode(raw, reply)


@pytest.fixture
def icsim_canister(icsim: IcSim) -> Iterator[Callable[..., IcsimCanister]]:
    """`icsim_canister(kind)` talks to that canister as the dev identity (a controller);
    `anonymous=True` or `pem=PATH` for other senders."""
    clients: list[IcClient] = []

    def make(kind: str, *, anonymous: bool = False, pem: Path | None = None) -> IcsimCanister:
        if anonymous:
            identity = load_identity(anonymous=True)
        else:
            identity = load_identity(pem=pem or icsim.dev_identity_pem)
        client = IcClient(resolve_network(icsim.url), identity, root_key=icsim.root_key)
        clients.append(client)
        return IcsimCanister(client, icsim.canister_ids[kind])

    yield make
    for client in clients:
        client.close()
