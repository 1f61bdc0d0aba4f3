"""`prep fetch` and `prep recipes` through the real CLI (subprocesses, env pointing at HubSim)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hubsim import HubSim

# Each case starts a `prep` process (a few seconds of imports), so the module counts as slow.
pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parent.parent
REPO = "acme/tiny-gguf"
MODEL = b"GGUF" + bytes(range(256)) * 40
CONFIG = b'{"arch": "tiny"}\n'

RECIPE = """
description = "tiny"
licence = "MIT"

[source]
repo = "{repo}"
revision = "{revision}"
files = ["model.gguf"]

[build]
kind = "passthrough"
files = {{ model = "model.gguf" }}

[target]
kind = "llama_cpp"
files = {{ model = "models/model.gguf" }}
load_args = ["--model", "models/model.gguf"]

[target.smoke]
prompt = "hi"
max_tokens = 4
expect = "."
"""


def prep(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(PROJECT), **(env or {})},
        timeout=120,
    )


@pytest.fixture
def project(hubsim: HubSim, tmp_path: Path) -> Path:
    hubsim.add_repo(REPO, {"model.gguf": MODEL, "config.json": CONFIG})
    root = tmp_path / "project"
    (root / "recipes").mkdir(parents=True)
    (root / "recipes" / "tiny.toml").write_text(RECIPE.format(repo=REPO, revision="main"))
    return root


def test_fetch_recipe_by_name_then_locked(project: Path) -> None:
    done = prep("fetch", "tiny", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0]["event"] == "file" and lines[0]["name"] == "model.gguf"
    result = lines[-1]
    assert result["event"] == "result"
    assert result["files"]["model.gguf"]["sha256"] == hashlib.sha256(MODEL).hexdigest()
    assert Path(result["lock"]) == project / "recipes" / "tiny.lock.json"

    done = prep("fetch", "tiny", "--locked", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "model.gguf: cached, verified" in done.stderr
    assert "sha256 " + hashlib.sha256(MODEL).hexdigest() in done.stdout


def test_locked_drift_exits_1(project: Path, hubsim: HubSim) -> None:
    assert prep("fetch", "tiny", cwd=project).returncode == 0
    new = hubsim.commit(REPO, {"model.gguf": MODEL[::-1]})
    done = prep("fetch", "tiny", "--locked", cwd=project)
    assert done.returncode == 1
    assert "--locked" in done.stderr and new in done.stderr


def test_adhoc_fetch(hubsim: HubSim, tmp_path: Path) -> None:
    commit = hubsim.add_repo(REPO, {"model.gguf": MODEL, "config.json": CONFIG})
    done = prep("fetch", REPO, "--file", "*.json", "--revision", commit, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert list(result["files"]) == ["config.json"]
    assert result["files"]["config.json"]["commit"] == commit
    assert Path(result["lock"]).is_relative_to(Path(os.environ["PREP_WORKDIR"]))


def test_recipe_path_form(project: Path, tmp_path: Path) -> None:
    done = prep("fetch", str(project / "recipes" / "tiny.toml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize(
    ("recipe", "env", "code", "expected"),
    [
        ("acme/nope", {}, 1, "repo acme/nope not found"),
        (REPO + "@v9", {}, 1, "revision 'v9' not found"),
        (REPO + ":missing.bin", {}, 1, "'missing.bin' matches no file"),
        ("acme/gated", {}, 1, "acme/gated is a gated repo and the Hub refused access (HF_TOKEN is not set)"),
        (REPO, {"HF_ENDPOINT": "closed"}, 1, "cannot reach the Hub"),
        ("bad-key", {}, 2, "unknown key `source.revsion`"),
        ("bad-value", {}, 2, "`source.files` must be a non-empty list"),
        ("nope-recipe", {}, 2, "no recipe named 'nope-recipe'"),
    ],
)
def test_failures_exit_nonzero_with_clear_message(
    project: Path, hubsim: HubSim, recipe: str, env: dict[str, str], code: int, expected: str
) -> None:
    hubsim.add_repo("acme/gated", {"model.gguf": MODEL}, gated=True)
    recipes = project / "recipes"
    repo, _, file = recipe.partition(":")
    repo, _, revision = repo.partition("@")
    (recipes / "case.toml").write_text(RECIPE.format(repo=repo, revision=revision or "main"))
    if file:
        (recipes / "case.toml").write_text((recipes / "case.toml").read_text().replace("model.gguf", file))
    (recipes / "bad-key.toml").write_text(
        RECIPE.format(repo=REPO, revision="main").replace("revision", "revsion")
    )
    (recipes / "bad-value.toml").write_text(
        RECIPE.format(repo=REPO, revision="main").replace('files = ["model.gguf"]', "files = []")
    )
    if env.get("HF_ENDPOINT") == "closed":
        env = {"HF_ENDPOINT": closed_port_url()}
    name = recipe if recipe in ("bad-key", "bad-value", "nope-recipe") else "case"
    done = prep("fetch", name, cwd=project, env=env)
    assert done.returncode == code, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_option_is_usage_error(project: Path) -> None:
    done = prep("fetch", "tiny", "--no-such", cwd=project)
    assert done.returncode == 2


def test_recipes_list_and_show(project: Path) -> None:
    done = prep("recipes", cwd=PROJECT)
    assert done.returncode == 0, done.stderr
    assert "qwen2.5-0.5b" in done.stdout and "675.7 MB" in done.stdout
    done = prep("recipes", "--json", cwd=project)
    [line] = done.stdout.splitlines()
    rows = json.loads(line)["recipes"]
    assert [r["name"] for r in rows] == ["tiny"]
    assert rows[0]["target"] == "llama_cpp"
    done = prep("recipes", "show", "tiny", "--json", cwd=project)
    recipe = json.loads(done.stdout)["recipe"]
    assert recipe["sources"][0]["repo"] == REPO
    assert recipe["sources"][0]["revision"] == "main"
    done = prep("recipes", "show", "qwen3-0.6b", cwd=PROJECT)
    assert "9465e63a22add5354d9bb4b99e90117043c7124007664907259bd16d043bb031" in done.stdout
