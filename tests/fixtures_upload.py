"""Fixtures of the upload area: files to upload, an IcClient for icsim, and an engine runner."""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from pipeline.ic.client import IcClient
from pipeline.ic.identity import load_identity
from pipeline.ic.network import Network
from pipeline.ic.retry import RetryPolicy
from pipeline.targets.profile import load_profile
from pipeline.upload.engine import UploadEngine
from pipeline.upload.plan import chunk_size_for
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import UploadFile, UploadReport, UploadRequest
from tests.icsim import IcSim

FAST_RETRY = RetryPolicy(
    first_delay_s=0.01, max_delay_s=0.05, poll_first_s=0.002, poll_max_s=0.02, resend_after_s=0.5
)


def write_gguf(path: Path, size: int, *, arch: str = "llama", seed: int = 0) -> Path:
    """A file with a GGUF header naming `arch`, padded with seeded random bytes to `size`."""
    key, value = b"general.architecture", arch.encode()
    header = (
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 1)
        + struct.pack("<Q", len(key))
        + key
        + struct.pack("<IQ", 8, len(value))
        + value
    )
    path.write_bytes(header + random_bytes(size - len(header), seed))
    return path


def random_bytes(n: int, seed: int = 0) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest() * 64
        counter += 1
    return bytes(out[:n])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def icsim_client(
    sim: IcSim,
    pem: Path | None = None,
    *,
    mainnet: bool = False,
    timeout: float = 10.0,
    expiry_s: float = 240.0,
) -> IcClient:
    network = Network("ic" if mainnet else "icsim", sim.url, is_mainnet=mainnet)
    identity = load_identity(pem=pem or sim.dev_identity_pem)
    retry = replace(FAST_RETRY, budget_s=timeout)
    return IcClient(network, identity, retry=retry, root_key=sim.root_key, ingress_expiry_s=expiry_s)


@dataclass
class EngineRun:
    """Runs the upload engine in-process against icsim, recording every progress event."""

    sim: IcSim
    workspace: Path
    events: list[dict[str, Any]] = field(default_factory=list)
    on_event: Callable[[dict[str, Any]], None] | None = None

    def __call__(
        self,
        kind: str | Path,
        files: list[tuple[str, Path, str]],
        *,
        canister: str | None = None,
        pem: Path | None = None,
        mainnet: bool = False,
        timeout: float = 10.0,
        expiry_s: float = 240.0,
        **options: Any,
    ) -> UploadReport:
        profile = load_profile(kind)
        request = UploadRequest(
            profile=profile,
            canister_id=canister or self.sim.canister_ids[profile.kind],
            files=tuple(UploadFile(role, path, remote) for role, path, remote in files),
            workspace_root=self.workspace,
            **options,
        )

        def record(event: dict[str, Any]) -> None:
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)

        with icsim_client(self.sim, pem, mainnet=mainnet, timeout=timeout, expiry_s=expiry_s) as client:
            engine = UploadEngine(client, request, UploadProgress(record, bar=False))
            return engine.run()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


@pytest.fixture
def upload_run(icsim: IcSim, tmp_path: Path) -> Iterator[EngineRun]:
    yield EngineRun(icsim, tmp_path / "work")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A 9.5 MB GGUF-headed file: five 1.9 MB chunks."""
    return write_gguf(tmp_path / "model.gguf", 9_500_000 + 123)


@pytest.fixture
def prep_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running `prep` as a subprocess with its workspace under tmp_path."""
    env = dict(os.environ)
    env["PREP_WORKDIR"] = str(tmp_path / "work")
    env.pop("PREP_PEM", None)
    return env


# The chunk size a concurrent llama_cpp upload sends with (block packing, pipeline/upload/plan.py).
LLAMA_CHUNK = chunk_size_for(load_profile("llama_cpp").max_chunk_size, concurrent=True)


def kind_with_chunk_size(kind: str, folder: Path, chunk_size: int) -> Path:
    """A copy of a shipped kind's folder with a smaller max_chunk_size, so tiny files take many chunks."""
    import re
    import shutil

    from pipeline.targets.profile import canisters_dir

    shutil.copytree(canisters_dir() / kind, folder)
    profile = folder / "profile.toml"
    text = profile.read_text()
    if "max_chunk_size" in text:
        text = re.sub(r"max_chunk_size = [\d_]+", f"max_chunk_size = {chunk_size}", text)
    else:
        text = text.replace("addressing = ", f"max_chunk_size = {chunk_size}\naddressing = ", 1)
    profile.write_text(text)
    return folder
