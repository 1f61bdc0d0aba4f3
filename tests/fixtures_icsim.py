"""Fixtures of the IC replica emulator (tests/icsim)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import icp_certificate.certificate as icp_certificate
import pytest
from icp_agent import Agent, Client
from icp_agent.agent import sign_request
from icp_candid.candid import Types, encode
from icp_identity import Identity
from icp_principal import Principal

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
def icsim_agent_for(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Agent]:
    """`icsim_agent_for(sim, identity=None)`: an icp-py-core agent for any IcSim that verifies
    certificates against that emulator's root key (dev identity unless `identity` is given)."""
    from pipeline.ic.bls import provide_blst_for_icp_py_core

    provide_blst_for_icp_py_core()

    def make(sim: IcSim, identity: Identity | None = None) -> Agent:
        # icp-py-core verifies against this module global, not Agent(root_key=...).
        monkeypatch.setattr(icp_certificate, "IC_ROOT_KEY", sim.root_key)
        who = identity if identity is not None else dev_identity(sim)
        return Agent(who, Client(sim.url), root_key=sim.root_key)

    return make


@pytest.fixture
def icsim_agent(icsim: IcSim, icsim_agent_for: Callable[..., Agent]) -> Callable[..., Agent]:
    """`icsim_agent(identity=None)`: an agent for the `icsim` fixture's emulator."""
    return lambda identity=None: icsim_agent_for(icsim, identity)


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


# ---- raw protocol helpers (envelopes signed by icp-py-core, sent by the test itself) ----

UPLOAD_TYPE = Types.Record(
    {"filename": Types.Text, "chunk": Types.Vec(Types.Nat8), "chunksize": Types.Nat64, "offset": Types.Nat64}
)


def upload_arg(filename: str, chunk: bytes, offset: int) -> bytes:
    value = {"filename": filename, "chunk": chunk, "chunksize": len(chunk), "offset": offset}
    return encode([{"type": UPLOAD_TYPE, "value": value}])


def call_envelope(
    identity: Identity, canister: str, method: str, arg: bytes, expiry_ns: int | None = None
) -> tuple[bytes, bytes]:
    content = {
        "request_type": "call",
        "sender": identity.sender().bytes,
        "canister_id": Principal.from_str(canister).bytes,
        "method_name": method,
        "arg": arg,
        "ingress_expiry": expiry_ns if expiry_ns is not None else time.time_ns() + 120 * 10**9,
    }
    return sign_request(content, identity)


def dev_identity(sim: IcSim) -> Identity:
    return Identity.from_pem(sim.dev_identity_pem.read_text())
