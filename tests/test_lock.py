"""`prep lock`: locks written from the Hub's state (hubsim), checked, and rewritten when a revision moves."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.fixtures_run import prep_in_process
from tests.hubsim import HubSim
from tests.hubsim.world import TinyWorld

SMOLLM2_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"


def lock(world: TinyWorld, *args: str) -> tuple[int, str, str, dict]:
    done = prep_in_process("lock", *args, "--recipes-dir", str(world.recipes_dir), "--json")
    return done.code, done.stdout, done.stderr, done.result


def test_lock_all_writes_the_same_locks_fetch_writes(tiny_world: TinyWorld, tmp_path: Path) -> None:
    code, _, stderr, result = lock(tiny_world, "--all", "--check")
    names = sorted(p.stem for p in tiny_world.recipes_dir.glob("*.toml"))
    assert code == 1 and result["stale"] == names and "missing or stale" in stderr
    assert not list(tiny_world.recipes_dir.glob("*.lock.json"))  # --check writes nothing

    code, _, stderr, result = lock(tiny_world, "--all")
    assert code == 0, stderr
    assert {item["status"] for item in result["locks"]} == {"new"}
    written = {p.name: p.read_bytes() for p in tiny_world.recipes_dir.glob("*.lock.json")}
    assert sorted(written) == [f"{n}.lock.json" for n in names]

    # A fetch of every recipe (downloads every byte and hashes it) finds exactly these locks.
    for name in names:
        fetched = prep_in_process("fetch", str(tiny_world.recipes_dir / f"{name}.toml"), "--locked")
        assert fetched.code == 0, fetched.stderr
        assert (tiny_world.recipes_dir / f"{name}.lock.json").read_bytes() == written[f"{name}.lock.json"]
        unlocked = prep_in_process("fetch", str(tiny_world.recipes_dir / f"{name}.toml"))
        assert unlocked.code == 0 and "lock updated" not in unlocked.stderr

    code, _, _, result = lock(tiny_world, "--all", "--check")
    assert code == 0 and result["stale"] == []


def test_a_moved_revision_is_reported_checked_and_relocked(
    tiny_world: TinyWorld, hubsim: HubSim, tmp_path: Path
) -> None:
    recipe = tiny_world.recipes_dir / "smollm2-135m.toml"
    lock_file = tiny_world.recipes_dir / "smollm2-135m.lock.json"
    assert lock(tiny_world, "smollm2-135m")[0] == 0
    first = json.loads(lock_file.read_text())
    old_commit = tiny_world.commits[SMOLLM2_REPO]
    assert first["sources"][0]["commit"] == old_commit

    # main moves: the weights change (an LFS file), a small file changes, one file is added.
    repo = hubsim.repos[SMOLLM2_REPO]
    files = {path: f.data for path, f in repo.commits[old_commit].items()}
    weights = bytearray(files["model.safetensors"])
    weights[-1] ^= 0xFF
    files["model.safetensors"] = bytes(weights) + b" "
    files["generation_config.json"] = b'{"do_sample": false}\n'
    new_commit = hubsim.commit(SMOLLM2_REPO, files)

    code, stdout, stderr, result = lock(tiny_world, "smollm2-135m", "--check")
    assert code == 1 and result["stale"] == ["smollm2-135m"]
    assert "smollm2-135m" in stderr and "prep lock smollm2-135m" in stderr
    assert json.loads(lock_file.read_text()) == first  # --check leaves the lock alone

    markdown = tmp_path / "body.md"
    done = prep_in_process(
        "lock", str(recipe), "--markdown", str(markdown), "--recipes-dir", str(tiny_world.recipes_dir)
    )
    assert done.code == 0, done.stderr
    new_sha = hashlib.sha256(files["model.safetensors"]).hexdigest()
    old_file = first["sources"][0]["files"]["model.safetensors"]
    assert f"commit {old_commit} -> {new_commit}" in done.stdout
    assert (
        f"~ model.safetensors: {old_file['size']:,} -> {len(files['model.safetensors']):,} B, "
        f"sha256 {old_file['sha256']} -> {new_sha}"
    ) in done.stdout
    assert "~ generation_config.json" in done.stdout and "~ config.json" not in done.stdout
    body = markdown.read_text()
    assert "### smollm2-135m" in body and f"`{new_commit}`" in body and f"`{new_sha}`" in body

    relocked = json.loads(lock_file.read_text())
    assert relocked["sources"][0]["commit"] == new_commit
    assert relocked["sources"][0]["files"]["model.safetensors"]["sha256"] == new_sha
    assert lock(tiny_world, "smollm2-135m", "--check")[0] == 0
    # The new lock is what a locked fetch of the moved revision downloads.
    fetched = prep_in_process("fetch", str(recipe), "--locked", "--json")
    assert fetched.code == 0, fetched.stderr
    assert fetched.result["files"]["model.safetensors"]["sha256"] == new_sha


def test_lock_refuses_bad_arguments_and_reports_an_unreachable_hub(
    tiny_world: TinyWorld, hubsim: HubSim
) -> None:
    assert prep_in_process("lock").code == 2
    both = prep_in_process("lock", "stories15m", "--all", "--recipes-dir", str(tiny_world.recipes_dir))
    assert both.code == 2 and "RECIPE names or --all" in both.stderr
    unknown = prep_in_process("lock", "nope", "--recipes-dir", str(tiny_world.recipes_dir))
    assert unknown.code == 2 and "no recipe named 'nope'" in unknown.stderr
    hubsim.stop()
    down = prep_in_process("lock", "stories15m", "--recipes-dir", str(tiny_world.recipes_dir))
    assert down.code == 1 and "Traceback" not in down.stderr and "could not resolve stories15m" in down.stderr
    assert not (tiny_world.recipes_dir / "stories15m.lock.json").exists()
