"""`prep release` / `prep verify`: reproducible bundles, verification that catches one flipped byte, and
the release workflow's own commands run against hubsim."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures_run import PROJECT, RECIPE_OF_KIND, prep_in_process
from tests.hubsim.world import TinyWorld

WORKFLOW = PROJECT / ".github" / "workflows" / "release.yml"


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def release(world: TinyWorld, name: str, dist: Path, *extra: str) -> dict:
    done = prep_in_process(
        "release", str(world.recipes_dir / f"{name}.toml"), "--dist", str(dist), "--json", *extra
    )
    assert done.code == 0, done.stderr
    return done.result


@pytest.fixture
def locked_world(tiny_world: TinyWorld) -> TinyWorld:
    """The tiny world with a lock file written for every recipe (a first, unlocked fetch)."""
    for recipe in sorted(tiny_world.recipes_dir.glob("*.toml")):
        fetched = prep_in_process("fetch", str(recipe))
        assert fetched.code == 0, fetched.stderr
    return tiny_world


@pytest.mark.parametrize("kind", ["llama_cpp", "gpt2", "icpp_llama2"])
def test_release_twice_from_fresh_workspaces_is_byte_identical(
    locked_world: TinyWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    name = RECIPE_OF_KIND[kind]
    first = release(locked_world, name, tmp_path / "dist-a", "--locked")
    monkeypatch.setenv("PREP_WORKDIR", str(tmp_path / "another-workspace"))  # build again from scratch
    release(locked_world, name, tmp_path / "dist-b", "--locked")
    a, b = tree(tmp_path / "dist-a"), tree(tmp_path / "dist-b")
    assert a == b
    in_bundle = sorted(p.split("/", 1)[1] for p in a if p != f"{name}/SHA256SUMS")
    assert sorted(f["name"] for f in first["files"]) == in_bundle
    manifest = json.loads(a[f"{name}/manifest.json"])
    assert manifest["recipe"]["name"] == name and manifest["recipe"]["locked"] is True
    assert manifest["target"]["kind"] == kind
    assert manifest["build"]["tools"]["prep"] and manifest["build"]["tools"]["gguf"]
    for source in manifest["sources"]:
        assert source.get("commit") or source.get("url")
        assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in source["files"])
    for artifact in manifest["artifacts"]:
        assert a[f"{name}/{artifact['file']}"].__len__() == artifact["size"]
    assert not [p for p in (tmp_path / "dist-a").iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_bundle_checks_with_sha256sum_and_rerun_is_unchanged(locked_world: TinyWorld, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    release(locked_world, "stories15m", dist, "--locked")
    if shutil.which("sha256sum"):
        subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=dist / "stories15m", check=True)
    assert release(locked_world, "stories15m", dist, "--locked")["unchanged"] is True
    verified = prep_in_process("verify", str(dist / "stories15m"), "--json")
    assert verified.code == 0 and verified.result["ok"] and verified.result["kind"] == "icpp_llama2"


@pytest.mark.parametrize("target", ["model.gguf", "manifest.json", "SHA256SUMS"])
def test_verify_catches_a_flipped_byte(locked_world: TinyWorld, tmp_path: Path, target: str) -> None:
    bundle = tmp_path / "dist" / "smollm2-135m"
    release(locked_world, "smollm2-135m", tmp_path / "dist")
    data = bytearray((bundle / target).read_bytes())
    data[len(data) // 2] ^= 0x01
    (bundle / target).write_bytes(bytes(data))
    checked = prep_in_process("verify", str(bundle))
    assert checked.code == 1
    assert "fails verification" in checked.stderr or "not a `sha256sum` line" in checked.stderr


def test_verify_catches_missing_and_extra_files(locked_world: TinyWorld, tmp_path: Path) -> None:
    bundle = tmp_path / "dist" / "gpt2-open-instruct"
    release(locked_world, "gpt2-open-instruct", tmp_path / "dist")
    (bundle / "tokenizer.json").unlink()
    (bundle / "notes.txt").write_text("not part of the release")
    checked = prep_in_process("verify", str(bundle))
    assert checked.code == 1
    assert "tokenizer.json is listed in SHA256SUMS but missing" in checked.stderr
    assert "notes.txt is in the bundle but not in SHA256SUMS" in checked.stderr


def test_release_locked_refuses_a_recipe_without_a_lock(tiny_world: TinyWorld, tmp_path: Path) -> None:
    done = prep_in_process(
        "release", str(tiny_world.recipes_dir / "stories15m.toml"), "--locked", "--dist", str(tmp_path / "d")
    )
    assert done.code == 1 and "no lock file" in done.stderr
    assert not (tmp_path / "d" / "stories15m").exists()


@pytest.mark.slow
def test_release_workflow_runs_install_tests_then_the_release_script(
    locked_world: TinyWorld, tmp_path: Path
) -> None:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["release"]["steps"]
    commands = [s["run"].strip() for s in steps if "run" in s]
    assert commands[:3] == ["make install", "make test", "scripts/release.sh dist"]
    assert any("gh release upload" in c and "dist/*.tar.gz" in c for c in commands)
    # The release step, as the workflow runs it, against hubsim's tiny world instead of the Hub.
    env = dict(os.environ, PREP_RECIPES=str(locked_world.recipes_dir), PYTHONPATH=str(PROJECT))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # prep, without a .venv here
    for attempt in ("first", "second"):
        workdir = tmp_path / attempt
        workdir.mkdir()
        (workdir / "scripts").symlink_to(PROJECT / "scripts")
        done = subprocess.run(
            ["bash", "-c", commands[2]], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
    names = sorted(p.stem for p in locked_world.recipes_dir.glob("*.toml"))
    first, second = tree(tmp_path / "first" / "dist"), tree(tmp_path / "second" / "dist")
    assert sorted(p for p in first if p.endswith(".tar.gz")) == [f"{n}.tar.gz" for n in names]
    assert first == second  # bundles and their tarballs are reproducible


@pytest.mark.llama
def test_release_of_a_llama_cpp_k_quant_is_byte_identical(
    tiny_world: TinyWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (tiny_world.recipes_dir / "smollm2-135m.toml").read_text()
    recipe = tiny_world.recipes_dir / "smollm2-135m-q4km.toml"
    recipe.write_text(source.replace('quantize = "q8_0"', 'quantize = "q4_k_m"'))
    first = release(tiny_world, "smollm2-135m-q4km", tmp_path / "dist-a")
    monkeypatch.setenv("PREP_WORKDIR", str(tmp_path / "another-workspace"))
    release(tiny_world, "smollm2-135m-q4km", tmp_path / "dist-b")
    assert tree(tmp_path / "dist-a") == tree(tmp_path / "dist-b")
    manifest = json.loads((tmp_path / "dist-a" / "smollm2-135m-q4km" / "manifest.json").read_text())
    assert manifest["build"]["tools"]["llama-cpp-python"] != "not installed"
    assert first["unchanged"] is False
