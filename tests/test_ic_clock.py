"""A local clock 10 minutes off: the client takes the replica's certified time, and says so once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pipeline.ic import candid
from pipeline.ic.client import IcClient
from pipeline.ic.identity import load_identity
from pipeline.ic.network import Network
from pipeline.targets.profile import load_profile
from pipeline.upload.engine import UploadEngine
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import UploadFile, UploadRequest
from tests.fixtures_upload import FAST_RETRY, sha256, write_gguf
from tests.icsim import IcSim

TEN_MINUTES_NS = 600 * 1_000_000_000


def _skewed_client(sim: IcSim, skew_ns: int, said: list[str]) -> IcClient:
    return IcClient(
        Network("icsim", sim.url, is_mainnet=False),
        load_identity(pem=sim.dev_identity_pem),
        root_key=sim.root_key,
        retry=FAST_RETRY,
        clock=lambda: time.time_ns() + skew_ns,
        say=said.append,
    )


@pytest.mark.parametrize("skew_ns", [TEN_MINUTES_NS, -TEN_MINUTES_NS], ids=["ahead", "behind"])
def test_calls_and_queries_succeed_with_a_skewed_clock(icsim: IcSim, skew_ns: int) -> None:
    said: list[str] = []
    canister = icsim.canister_ids["llama_cpp"]
    with _skewed_client(icsim, skew_ns, said) as client:
        client.call(canister, "health", candid.encode([], []))  # the first call is refused, then re-signed
        client.query(canister, "health", candid.encode([], []))
        assert client.module_hash(canister) is not None
    direction = "ahead of" if skew_ns > 0 else "behind"
    assert len(said) == 1 and f"clock is 600 s {direction} the certified time" in said[0], said


def test_an_upload_with_a_clock_ten_minutes_behind(icsim: IcSim, tmp_path: Path) -> None:
    said: list[str] = []
    model = write_gguf(tmp_path / "model.gguf", 4_000_123)
    request = UploadRequest(
        profile=load_profile("llama_cpp"),
        canister_id=icsim.canister_ids["llama_cpp"],
        files=(UploadFile("model", model, "models/model.gguf"),),
        workspace_root=tmp_path / "work",
    )
    with _skewed_client(icsim, -TEN_MINUTES_NS, said) as client:
        UploadEngine(client, request, UploadProgress(bar=False)).run()
    assert sha256(icsim.canister("llama_cpp").file_bytes("models/model.gguf")) == sha256(model.read_bytes())
    assert len(said) == 1 and "600 s behind" in said[0]


def test_a_correct_clock_is_left_alone(icsim: IcSim) -> None:
    said: list[str] = []
    with _skewed_client(icsim, 0, said) as client:
        client.call(icsim.canister_ids["llama_cpp"], "health", candid.encode([], []))
        assert not client.clock.corrected
    assert said == []
