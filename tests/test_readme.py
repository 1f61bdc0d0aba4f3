"""README.md's commands, run as written: every ```bash block not marked `<!-- not run ... -->`, in order,
in a dfx-style project folder whose Hugging Face is hubsim and whose local replica is icsim."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from pipeline.cli.app import app
from tests.fixtures_run import PROJECT
from tests.hubsim.world import TinyWorld
from tests.icsim import IcSim

README = PROJECT / "README.md"
SKIP_MARK = "<!-- not run"


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    run: bool


def bash_blocks(text: str) -> list[Block]:
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```bash":
            previous = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            end = lines.index("```", index + 1)
            blocks.append(Block(index + 1, "\n".join(lines[index + 1 : end]), SKIP_MARK not in previous))
            index = end
        index += 1
    return blocks


def test_setup_is_exactly_two_commands_before_anything_else() -> None:
    blocks = bash_blocks(README.read_text())
    assert blocks[0].code.splitlines() == ["make install", "make test"]
    assert blocks[1].code.strip() == "make demo"


def test_readme_shows_every_command() -> None:
    text = README.read_text()
    names = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    missing = [name for name in names if not re.search(rf"^prep {name}\b", text, re.MULTILINE)]
    assert missing == [], f"commands without an example in README.md: {missing}"


def dfx_project(folder: Path, world: TinyWorld, sim: IcSim) -> Path:
    """What a user has after `dfx deploy`: dfx.json, canister ids, a default identity; plus recipes."""
    shutil.copytree(world.recipes_dir, folder / "recipes")
    (folder / "dfx.json").write_text(json.dumps({"networks": {"local": {"bind": sim.url.split("//")[1]}}}))
    ids = {kind: {"local": principal} for kind, principal in sim.canister_ids.items()}
    (folder / ".dfx" / "local").mkdir(parents=True)
    (folder / ".dfx" / "local" / "canister_ids.json").write_text(json.dumps(ids))
    identity = folder / "dfx-home" / ".config" / "dfx" / "identity"
    (identity / "default").mkdir(parents=True)
    shutil.copy(sim.dev_identity_pem, identity / "default" / "identity.pem")
    (identity.parent / "identity.json").write_text(json.dumps({"default": "default"}))
    # What `dfx canister metadata llama_cpp candid:service > llama_cpp.did` saves.
    (folder / "llama_cpp.did").write_text(sim.canister("llama_cpp").candid_service())
    return folder


@pytest.mark.slow
def test_readme_commands_run_as_written(tiny_world: TinyWorld, icsim: IcSim, tmp_path: Path) -> None:
    folder = dfx_project(tmp_path / "project", tiny_world, icsim)
    env = {k: v for k, v in os.environ.items() if k not in ("PREP_WORKDIR", "PREP_PEM", "HF_TOKEN")}
    env["PATH"] = f"{PROJECT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    env["DFX_CONFIG_ROOT"] = str(folder / "dfx-home")
    env["PYTHONPATH"] = str(PROJECT)
    ran = 0
    for block in bash_blocks(README.read_text()):
        if not block.run:
            continue
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.code],
            cwd=folder, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, (
            f"README.md line {block.line}:\n{block.code}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
        )
        ran += 1
    assert ran >= 4
    # What the commands were meant to leave behind.
    assert (folder / "dist" / "stories15m" / "SHA256SUMS").is_file()
    assert icsim.canister("llama_cpp").file_bytes("models/second.gguf") is not None
    assert icsim.canister("gpt2").model_config is not None
