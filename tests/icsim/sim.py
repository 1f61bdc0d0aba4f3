"""IcSim: an IC (one or more subnets) emulator hosting Python models of the LLM canisters."""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.icsim.canisters.base import CanisterModel
from tests.icsim.canisters.gpt2 import Gpt2Canister
from tests.icsim.canisters.ic_llm import IcLlmCanister
from tests.icsim.canisters.icpp_llama2 import IcppLlama2Canister
from tests.icsim.canisters.llama_cpp import LlamaCppCanister
from tests.icsim.canisters.llama_cpp_releases import INTERFACES as LLAMA_CPP_INTERFACES
from tests.icsim.certify import RootKey
from tests.icsim.faults import Faults
from tests.icsim.identity import write_dev_identity
from tests.icsim.principal import canister_id, from_text, to_text
from tests.icsim.replica import (
    DEFAULT_INGRESS_POOL_BYTES,
    BlockConfig,
    ExecutedUpdate,
    Observations,
    Replica,
)
from tests.icsim.server import IcHttpServer
from tests.icsim.subnet import CANISTERS_PER_SUBNET_RANGE, SubnetInfo, delegation
from tests.icsim.system import DEFAULT_CYCLES
from tests.icsim.topology import Topology

# Subnet 0 hosts one canister of each kind (in this order); every subnet hosts `canisters_per_subnet`
# canisters of the first kind (the fleet of an operator: llama_cpp canisters, 2-4 per subnet).
CANISTER_KINDS: tuple[type[CanisterModel], ...] = (
    LlamaCppCanister,
    IcppLlama2Canister,
    Gpt2Canister,
    IcLlmCanister,
)


@dataclass(frozen=True)
class HostedCanister:
    kind: str
    principal: str
    subnet: str  # the subnet's principal


class IcSim:
    """Start with `with IcSim() as sim:` or `.start()`; `.url` is the replica URL."""

    def __init__(
        self,
        block_interval: float = 0.0,
        block_ingress_bytes: int = 4 * 1024 * 1024,
        latency: float = 0.0,
        controllers: list[str | bytes] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sync_call_timeout: float = 10.0,
        llama_cpp_interface: str = "current",
        subnets: int = 1,
        canisters_per_subnet: int = 1,
        background_load: float = 0.0,
        cycles: int = DEFAULT_CYCLES,
        range_encoding: str = "both",
        ingress_pool_bytes: int = DEFAULT_INGRESS_POOL_BYTES,
        latency_jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        if subnets < 1 or canisters_per_subnet < 1:
            raise ValueError("subnets and canisters_per_subnet must be at least 1")
        self._workdir = Path(tempfile.mkdtemp(prefix="icsim-"))
        self.dev_identity_pem = self._workdir / "identity" / "dev" / "identity.pem"
        dev_principal = write_dev_identity(self.dev_identity_pem)
        self.dev_principal = to_text(dev_principal)
        owners = [dev_principal] if controllers is None else [_raw(c) for c in controllers]
        self.root_key_pair = RootKey()
        self.root_key = self.root_key_pair.der
        self.faults = Faults()
        # An older llama_cpp_canister release's interface instead of the current one (llama_cpp_releases.py).
        kinds = (LLAMA_CPP_INTERFACES[llama_cpp_interface], *CANISTER_KINDS[1:])
        self.blocks = BlockConfig(
            block_interval,
            block_ingress_bytes,
            latency,
            background_load,
            ingress_pool_bytes,
            latency_jitter,
            seed,
        )
        self.observations = Observations()
        registry = [SubnetInfo.create(i, self.root_key_pair, range_encoding) for i in range(subnets)]
        replicas = []
        self.hosted: list[HostedCanister] = []
        for subnet in registry:
            models = self._models(kinds, subnet.index, canisters_per_subnet, owners)
            for model in models:
                model.system.cycles = cycles
            self.hosted += [
                HostedCanister(m.kind, m.canister_text, to_text(subnet.subnet_id)) for m in models
            ]
            replicas.append(
                Replica(
                    subnet, models, self.blocks, self.faults, registry=registry,
                    observations=self.observations,
                    delegation=None if subnet.index == 0 else delegation(self.root_key_pair, subnet),
                )
            )  # fmt: skip
        self.subnets = registry
        self.topology = Topology(self.root_key_pair, replicas, self.faults)
        self.replica = replicas[0]
        self.canister_ids: dict[str, str] = {}
        for hosted in self.hosted:
            self.canister_ids.setdefault(hosted.kind, hosted.principal)
        self._host, self._port = host, port
        self._sync_call_timeout = sync_call_timeout
        self._server: IcHttpServer | None = None
        self._serve_thread: threading.Thread | None = None

    def _models(
        self, kinds: tuple[type[CanisterModel], ...], subnet: int, per_subnet: int, owners: list[bytes]
    ) -> list[CanisterModel]:
        fleet = [kinds[0]] * (per_subnet - 1 if subnet == 0 else per_subnet)
        first = max(1, subnet * CANISTERS_PER_SUBNET_RANGE)
        models = []
        for offset, kind in enumerate([*kinds, *fleet] if subnet == 0 else fleet):
            cid = canister_id(first + offset)
            models.append(kind(cid, owners, self._workdir / "stable" / f"{kind.kind}-{to_text(cid)}"))
        return models

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> str:
        self.topology.start()
        self._serve()
        return self.url

    def stop(self) -> None:
        self._shutdown_server()
        self.topology.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def restart(self) -> None:
        """Stop serving and start again on the same port: stable state kept, in-flight messages lost."""
        self._shutdown_server()
        self.topology.stop()
        self.topology.drop_in_flight()
        self.topology.start()
        self._serve()

    def __enter__(self) -> IcSim:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        self._server = IcHttpServer((self._host, self._port), self.topology, self._sync_call_timeout)
        self._port = self._server.server_address[1]
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="icsim-http", daemon=True
        )
        self._serve_thread.start()

    def _shutdown_server(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.close_all_connections()
        self._server.server_close()
        if self._serve_thread is not None:
            self._serve_thread.join()
        self._server = None

    # ---- inspection and control -------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def canister(self, kind_or_id: str) -> CanisterModel:
        raw = from_text(self.canister_ids.get(kind_or_id, kind_or_id))
        return self.topology.for_canister(raw).canisters[raw]

    def subnet_principal(self, index: int) -> str:
        return to_text(self.subnets[index].subnet_id)

    def subnet_of(self, kind_or_id: str) -> str:
        """The principal of the subnet hosting the canister."""
        raw = from_text(self.canister_ids.get(kind_or_id, kind_or_id))
        return to_text(self.topology.for_canister(raw).subnet_id)

    def upgrade(self, canister: str) -> None:
        """Upgrade a canister in place: heap state reset, module hash changed, stable state kept."""
        model = self.canister(canister)
        with self.topology.for_canister(model.canister_id).canister_lock(model.canister_id):
            model.upgrade()

    def top_up(self, canister: str, cycles: int) -> None:
        """Add cycles to a canister's balance (what `dfx cycles top-up` does)."""
        self.canister(canister).system.top_up(cycles)

    @property
    def updates(self) -> list[ExecutedUpdate]:
        """Every executed update message, in execution order (method, argument size, offset, outcome)."""
        return list(self.observations.updates)

    @property
    def refused_for_cycles(self) -> int:
        """Calls refused with IC0207 (at ingress or before execution)."""
        return self.observations.refused_for_cycles

    @property
    def refused_for_load(self) -> int:
        """New calls refused "overloaded" (HTTP 503) because an ingress pool was over `ingress_pool_bytes`."""
        return self.observations.refused_for_load

    @property
    def peak_queued_bytes(self) -> int:
        """The most bytes any subnet left waiting after a block took its share."""
        return self.observations.peak_queued_bytes


def _raw(principal: str | bytes) -> bytes:
    return principal if isinstance(principal, bytes) else from_text(principal)
