"""Fixtures of the IC replica emulator (tests/icsim)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import icp_certificate.certificate as icp_certificate
import pytest
from icp_agent import Agent, Client
from icp_identity import Identity

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
