"""Fixtures for the Hugging Face side: a running HubSim with the environment pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hubsim import HubSim
from tests.hubsim.world import TinyWorld, build_tiny_world


@pytest.fixture
def hubsim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubSim]:
    """A HubSim on 127.0.0.1; HF_ENDPOINT, HF_HOME and PREP_WORKDIR point at it and at tmp dirs.

    pipeline.hub reads these variables at call time, so in-process calls and `prep` subprocesses
    (which inherit os.environ) both talk to the emulator.
    """
    with HubSim() as sim:
        monkeypatch.setenv("HF_ENDPOINT", sim.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("PREP_WORKDIR", str(tmp_path / "work"))
        for name in (
            "HF_TOKEN",
            "HF_HUB_OFFLINE",
            "HF_HUB_CACHE",
            "HUGGINGFACE_HUB_CACHE",
            "TRANSFORMERS_OFFLINE",
        ):
            monkeypatch.delenv(name, raising=False)
        yield sim


@pytest.fixture
def tiny_world(hubsim: HubSim, tmp_path: Path) -> TinyWorld:
    """The shipped recipes' repos served by `hubsim` with tiny generated models; recipes in tmp."""
    return build_tiny_world(hubsim, tmp_path / "tiny-world")
