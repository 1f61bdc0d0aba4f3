"""Fixtures of the end-to-end area: the shipped recipes' tiny world on hubsim, icsim, and `prep` runners."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.app import main
from tests.hubsim.world import TinyWorld
from tests.icsim import IcSim

# One tiny recipe of the tiny world per canister kind.
RECIPE_OF_KIND = {"llama_cpp": "smollm2-135m", "gpt2": "gpt2-open-instruct", "icpp_llama2": "stories15m"}
PROJECT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class PrepResult:
    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.startswith("{")]

    @property
    def result(self) -> dict[str, Any]:
        found = [e for e in self.events if e.get("event") == "result"]
        assert found, f"no result event (exit {self.code}): {self.stderr}"
        return found[-1]


def prep_in_process(*args: str) -> PrepResult:
    """Runs the `prep` CLI in this process (fast: no interpreter start-up), capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return PrepResult(code, out.getvalue(), err.getvalue())


@dataclass
class DeployWorld:
    """Recipes served by hubsim with tiny models, and icsim hosting one canister of each kind."""

    world: TinyWorld
    sim: IcSim
    workdir: Path

    def recipe(self, kind: str) -> Path:
        return self.world.recipes_dir / f"{RECIPE_OF_KIND[kind]}.toml"

    def target_args(self, kind: str) -> list[str]:
        return [
            "--network", self.sim.url, "--canister", self.sim.canister_ids[kind],
            "--pem", str(self.sim.dev_identity_pem),
        ]  # fmt: skip

    def run_args(self, kind: str, *extra: str) -> list[str]:
        return ["run", str(self.recipe(kind)), *self.target_args(kind), "--yes", *extra]

    def prep(self, *args: str) -> PrepResult:
        return prep_in_process(*args)

    def prep_process(self, *args: str, env: dict[str, str] | None = None) -> PrepResult:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            env=env or dict(os.environ),
            capture_output=True,
            text=True,
            timeout=300,
            cwd=PROJECT,
        )
        return PrepResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def deploy_world(tiny_world: TinyWorld, icsim: IcSim, tmp_path: Path) -> DeployWorld:
    """`tiny_world` (hubsim; HF_ENDPOINT and PREP_WORKDIR set) plus a running `icsim`."""
    return DeployWorld(tiny_world, icsim, Path(os.environ["PREP_WORKDIR"]))
