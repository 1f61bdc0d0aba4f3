"""IcSim: an IC replica emulator hosting Python models of the LLM canisters."""

from __future__ import annotations

import shutil
import tempfile
import threading
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
from tests.icsim.replica import BlockConfig, Replica
from tests.icsim.server import IcHttpServer

CANISTER_KINDS: tuple[type[CanisterModel], ...] = (
    LlamaCppCanister,
    IcppLlama2Canister,
    Gpt2Canister,
    IcLlmCanister,
)


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
    ) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="icsim-"))
        self.dev_identity_pem = self._workdir / "identity" / "dev" / "identity.pem"
        dev_principal = write_dev_identity(self.dev_identity_pem)
        self.dev_principal = to_text(dev_principal)
        owners = [dev_principal] if controllers is None else [_raw(c) for c in controllers]
        self.root_key_pair = RootKey()
        self.root_key = self.root_key_pair.der
        self.faults = Faults()
        # An older llama_cpp_canister release's interface instead of the current one (llama_cpp_releases.py).
        kinds = [LLAMA_CPP_INTERFACES[llama_cpp_interface], *CANISTER_KINDS[1:]]
        models = [
            kind(canister_id(index), owners, self._workdir / "stable" / kind.kind)
            for index, kind in enumerate(kinds, start=1)
        ]
        self.canister_ids = {m.kind: to_text(m.canister_id) for m in models}
        self.blocks = BlockConfig(block_interval, block_ingress_bytes, latency)
        self.replica = Replica(models, self.root_key_pair, self.blocks, self.faults)
        self._host, self._port = host, port
        self._sync_call_timeout = sync_call_timeout
        self._server: IcHttpServer | None = None
        self._serve_thread: threading.Thread | None = None

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> str:
        self.replica.start()
        self._serve()
        return self.url

    def stop(self) -> None:
        self._shutdown_server()
        self.replica.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def restart(self) -> None:
        """Stop serving and start again on the same port: stable state kept, in-flight messages lost."""
        self._shutdown_server()
        self.replica.stop()
        self.replica.drop_in_flight()
        self.replica.start()
        self._serve()

    def __enter__(self) -> IcSim:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _serve(self) -> None:
        self._server = IcHttpServer((self._host, self._port), self.replica, self._sync_call_timeout)
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
        canister_text = self.canister_ids.get(kind_or_id, kind_or_id)
        return self.replica.canisters[from_text(canister_text)]

    def upgrade(self, canister: str) -> None:
        """Upgrade a canister in place: heap state reset, module hash changed, stable state kept."""
        model = self.canister(canister)
        with self.replica.canister_lock(model.canister_id):
            model.upgrade()


def _raw(principal: str | bytes) -> bytes:
    return principal if isinstance(principal, bytes) else from_text(principal)
