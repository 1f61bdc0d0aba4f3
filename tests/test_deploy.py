"""Deploying release bundles: `prep upload|run --bundle`, `prep verify --canister`, scripts/deploy.sh.

The chain as the workflows run it: scripts/release.sh (hubsim) -> scripts/deploy.sh (icsim) ->
`prep verify --canister`, then one byte changed in a bundle (refused before any byte reaches the
canister) and one byte changed in the canister (verify names the file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from pipeline.release import ci_run
from tests.fixtures_run import PROJECT, RECIPE_OF_KIND, DeployWorld, PrepResult
from tests.test_release import release

UPLOAD_METHODS = {"file_upload_chunk", "append_safetensors_bytes", "upload_model_bytes_chunk"}
MODEL = "models/model.gguf"


def flip_byte(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


def bundle_of(world: DeployWorld, kind: str, dist: Path) -> Path:
    name = RECIPE_OF_KIND[kind]
    release(world.world, name, dist)
    return dist / name


def deploy(world: DeployWorld, kind: str, bundle: Path, command: str = "upload") -> PrepResult:
    return world.prep(command, "--bundle", str(bundle), *world.target_args(kind), "--yes", "--json")


def verify(world: DeployWorld, kind: str, bundle: Path) -> PrepResult:
    return world.prep("verify", str(bundle), *world.target_args(kind), "--json")


def uploads(world: DeployWorld, kind: str) -> int:
    calls = world.sim.canister(kind).counters.calls
    return sum(count for method, count in calls.items() if method in UPLOAD_METHODS)


@pytest.mark.parametrize("kind", ["llama_cpp", "gpt2", "icpp_llama2"])
def test_a_bundle_deploys_and_the_canister_is_proven_to_hold_it(
    deploy_world: DeployWorld, tmp_path: Path, kind: str
) -> None:
    bundle = bundle_of(deploy_world, kind, tmp_path / "dist")
    manifest = json.loads((bundle / "manifest.json").read_text())
    deployed = deploy(deploy_world, kind, bundle)
    assert deployed.code == 0, deployed.stderr
    result = deployed.result
    assert [s["stage"] for s in result["stages"]] == ["verify", "upload", "load", "smoke"]
    assert result["smoke"]["passed"] and result["bundle"] == str(bundle)
    # Uploaded from the bundle itself, under the manifest's remote names.
    for artifact in manifest["artifacts"]:
        sent = result["artifacts"][artifact["role"]]
        assert sent["path"] == str(bundle / artifact["file"]) and sent["remote"] == artifact["remote"]
        assert sent["sha256"] == artifact["sha256"]

    # prep status names the recipe and the bundle the files came from (the upload journal keeps them).
    status = deploy_world.prep("status", *deploy_world.target_args(kind), "--json")
    assert status.code == 0, status.stdout + status.stderr
    (row,) = status.result["canisters"]
    assert {(f["remote"], f["sha256"], f["sha256_from"], f["recipe"], f["bundle"]) for f in row["files"]} == {
        (a["remote"], a["sha256"], "journal", manifest["recipe"]["name"], str(bundle.resolve()))
        for a in manifest["artifacts"]
    }

    checked = verify(deploy_world, kind, bundle)
    assert checked.code == 0, checked.stderr
    proof = checked.result
    assert proof["ok"] and proof["module_hash"] and proof["loaded_under"] == proof["module_hash"]
    verdicts = {f["file"]: f["verdict"] for f in proof["files"]}
    assert verdicts == {
        a["file"]: "proven" if kind == "llama_cpp" else "consistent" for a in manifest["artifacts"]
    }
    for item in proof["files"]:
        if kind == "llama_cpp":
            assert item["not_proven"] == [] and "every byte" in item["proven"][0]
        else:
            assert any("the bytes themselves" in text for text in item["not_proven"])
            assert any("(journal)" in text for text in item["proven"])
    if kind == "icpp_llama2":
        model = next(f for f in proof["files"] if f["role"] == "model")
        assert any(
            "get_model_config: dim=" in text and "is this file's header" in text for text in model["proven"]
        )

    # The same bundle again: everything is in place, nothing is sent.
    before = uploads(deploy_world, kind)
    again = deploy(deploy_world, kind, bundle, command="run")
    assert again.code == 0, again.stderr
    assert uploads(deploy_world, kind) == before
    assert {s["stage"]: s["status"] for s in again.result["stages"]}["upload"] == "skipped"


def test_verify_names_the_file_when_one_byte_in_the_canister_changed(
    deploy_world: DeployWorld, tmp_path: Path
) -> None:
    bundle = bundle_of(deploy_world, "llama_cpp", tmp_path / "dist")
    assert deploy(deploy_world, "llama_cpp", bundle).code == 0
    canister = deploy_world.sim.canister("llama_cpp")
    flip_byte(canister.file_path(MODEL), at=canister.file_path(MODEL).stat().st_size - 3)
    checked = verify(deploy_world, "llama_cpp", bundle)
    assert checked.code == 1
    assert f"model.gguf: the canister's {MODEL} has sha256" in checked.stderr
    assert "the first differing range starts at byte" in checked.stderr
    [proof] = checked.result["files"]
    assert proof["verdict"] == "differs" and proof["proven"] == []

    # A file of another length, and no file at all, are named too.
    canister.file_path(MODEL).write_bytes(b"GGUF")
    assert f"the canister's {MODEL} holds 4 bytes" in verify(deploy_world, "llama_cpp", bundle).stderr
    canister.file_path(MODEL).unlink()
    assert f"the canister has no file {MODEL}" in verify(deploy_world, "llama_cpp", bundle).stderr


def test_verify_after_an_upgrade_says_the_loaded_model_is_gone(
    deploy_world: DeployWorld, tmp_path: Path
) -> None:
    bundle = bundle_of(deploy_world, "icpp_llama2", tmp_path / "dist")
    assert deploy(deploy_world, "icpp_llama2", bundle).code == 0
    deploy_world.sim.upgrade(deploy_world.sim.canister_ids["icpp_llama2"])
    checked = verify(deploy_world, "icpp_llama2", bundle)
    assert checked.code == 1
    assert "the canister's code changed since the files went in" in checked.stderr
    assert "the canister is not ready" in checked.stderr
    assert "get_model_config reports no model set up" in checked.stdout + checked.stderr


def test_verify_without_a_journal_proves_llama_cpp_bytes_but_not_append_kinds(
    deploy_world: DeployWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for kind in ("llama_cpp", "icpp_llama2"):
        bundle = bundle_of(deploy_world, kind, tmp_path / "dist")
        assert deploy(deploy_world, kind, bundle).code == 0
    monkeypatch.setenv("PREP_WORKDIR", str(tmp_path / "another-machine"))
    assert verify(deploy_world, "llama_cpp", tmp_path / "dist" / "smollm2-135m").code == 0
    elsewhere = verify(deploy_world, "icpp_llama2", tmp_path / "dist" / "stories15m")
    assert elsewhere.code == 1
    assert "tokenizer.bin: nothing shows it is in the canister" in elsewhere.stderr
    assert "model.bin: nothing shows" not in elsewhere.stderr  # its header is what the canister loaded
    assert "no upload journal" in elsewhere.stderr


@pytest.mark.parametrize("damage", ["flip", "remove", "add"])
def test_a_changed_bundle_is_refused_before_any_byte(
    deploy_world: DeployWorld, tmp_path: Path, damage: str
) -> None:
    bundle = bundle_of(deploy_world, "llama_cpp", tmp_path / "dist")
    if damage == "flip":
        flip_byte(bundle / "model.gguf")
    elif damage == "remove":
        (bundle / "model.gguf").unlink()
    else:
        (bundle / "extra.gguf").write_bytes(b"GGUF")
    refused = deploy(deploy_world, "llama_cpp", bundle)
    assert refused.code == 1 and "fails verification" in refused.stderr
    assert uploads(deploy_world, "llama_cpp") == 0
    assert deploy_world.sim.canister("llama_cpp").file_bytes(MODEL) is None
    assert not (deploy_world.workdir / ".journal").exists()


def test_bundle_options_that_do_not_go_together(deploy_world: DeployWorld, tmp_path: Path) -> None:
    target = deploy_world.target_args("llama_cpp")
    both = deploy_world.prep("upload", "smollm2-135m", "--bundle", str(tmp_path), *target)
    assert both.code == 2 and "--bundle" in both.stderr
    assert deploy_world.prep("upload", "--bundle", str(tmp_path), "--no-load", *target).code == 2
    assert deploy_world.prep("run", "--bundle", str(tmp_path), "--locked", *target).code == 2
    missing = deploy_world.prep("upload", "--bundle", str(tmp_path / "nope"), *target)
    assert missing.code == 1 and "not a release bundle folder" in missing.stderr


def test_the_manifest_names_the_github_actions_run_only_inside_actions(
    deploy_world: DeployWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "octo/models",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        "GITHUB_REF": "refs/tags/v1.0.0",
        "GITHUB_WORKFLOW_REF": "octo/models/.github/workflows/release.yml@refs/tags/v1.0.0",
        "GITHUB_EVENT_NAME": "push",
    }
    assert ci_run({}) is None and ci_run({**env, "GITHUB_ACTIONS": "false"}) is None
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bundle = bundle_of(deploy_world, "icpp_llama2", tmp_path / "dist")
    built_by = json.loads((bundle / "manifest.json").read_text())["built_by"]
    assert built_by["run_url"] == "https://github.com/octo/models/actions/runs/4242"
    assert built_by["commit"] == env["GITHUB_SHA"] and built_by["repository"] == "octo/models"
    checked = deploy_world.prep("verify", str(bundle))
    assert (
        checked.code == 0
        and f"built by {built_by['run_url']} at commit {env['GITHUB_SHA']}" in checked.stdout
    )
    assert deploy(deploy_world, "icpp_llama2", bundle).result["built_by"] == built_by


# ---- the workflow scripts, end to end --------------------------------------------------------------


def run_script(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def repack(dist: Path, name: str, change: callable) -> None:  # type: ignore[valid-type]
    """Unpacks a release tarball, applies `change` to the bundle, packs it again and updates the
    release's SHA256SUMS, as someone who replaced the release assets would."""
    scratch = dist / "scratch"
    with tarfile.open(dist / f"{name}.tar.gz") as archive:
        archive.extractall(scratch, filter="data")
    change(scratch / name)
    with tarfile.open(dist / f"{name}.tar.gz", "w:gz") as archive:
        archive.add(scratch / name, arcname=name)
    shutil.rmtree(scratch)
    sums = subprocess.run(["sha256sum", "--", *sorted(p.name for p in dist.glob("*.tar.gz"))], cwd=dist,
                          capture_output=True, text=True, check=True)  # fmt: skip
    (dist / "SHA256SUMS").write_text(sums.stdout)


@pytest.mark.slow
def test_release_then_deploy_then_verify_and_both_tamperings(
    deploy_world: DeployWorld, tmp_path: Path
) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    for kind in ("llama_cpp", "icpp_llama2"):
        shutil.copy(deploy_world.recipe(kind), recipes)
    locked = deploy_world.prep("lock", "--all", "--recipes-dir", str(recipes))
    assert locked.code == 0, locked.stderr
    env = dict(os.environ, PREP_RECIPES=str(recipes), PYTHONPATH=str(PROJECT))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("GITHUB_ACTIONS", None)
    built = run_script([str(PROJECT / "scripts" / "release.sh"), "dist"], tmp_path, env)
    assert built.returncode == 0, built.stderr
    dist = tmp_path / "dist"
    for leftover in [p for p in dist.iterdir() if p.is_dir()]:
        shutil.rmtree(leftover)  # a release's assets are the tarballs and SHA256SUMS only

    sim = deploy_world.sim
    targets = [
        f"smollm2-135m={sim.canister_ids['llama_cpp']}",
        f"stories15m={sim.canister_ids['icpp_llama2']}",
    ]
    summary = tmp_path / "summary.md"
    env.update(PREP_PEM=str(sim.dev_identity_pem), GITHUB_STEP_SUMMARY=str(summary))
    deployed = run_script([str(PROJECT / "scripts" / "deploy.sh"), "dist", sim.url, *targets], tmp_path, env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    table = summary.read_text()
    assert "| recipe | canister | bytes | sent | MB/s | sha256 verified | smoke answer |" in table
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert (
        "model.gguf: every byte" in rows["smollm2-135m"]
        and sim.canister_ids["llama_cpp"] in rows["smollm2-135m"]
    )
    assert "model.bin: consistent" in rows["stories15m"]
    bundle = tmp_path / "smollm2-135m"  # the deployed bundle, kept: the next deploy unpacks over it
    shutil.copytree(tmp_path / "dist" / "deploy" / "bundles" / "smollm2-135m", bundle)
    assert verify(deploy_world, "llama_cpp", bundle).code == 0
    held = sim.canister("llama_cpp").file_bytes(MODEL)

    # One byte changed in a bundle (the release's SHA256SUMS replaced to match): refused before any byte.
    sent_before = uploads(deploy_world, "llama_cpp")
    repack(dist, "smollm2-135m", lambda folder: flip_byte(folder / "model.gguf"))
    refused = run_script([str(PROJECT / "scripts" / "deploy.sh"), "dist", sim.url, targets[0]], tmp_path, env)
    assert refused.returncode == 1
    assert "fails verification" in refused.stderr and "model.gguf: sha256 is" in refused.stderr
    assert uploads(deploy_world, "llama_cpp") == sent_before
    assert sim.canister("llama_cpp").file_bytes(MODEL) == held
    assert "**failed**" in summary.read_text().splitlines()[-1]
    # A tarball that does not match the release's SHA256SUMS never gets unpacked.
    flip_byte(dist / "stories15m.tar.gz")
    mismatch = run_script(
        [str(PROJECT / "scripts" / "deploy.sh"), "dist", sim.url, targets[1]], tmp_path, env
    )
    assert mismatch.returncode == 1 and "stories15m.tar.gz: FAILED" in mismatch.stdout + mismatch.stderr

    # One byte changed in the canister: verify names the file.
    canister = sim.canister("llama_cpp")
    flip_byte(canister.file_path(MODEL))
    tampered = verify(deploy_world, "llama_cpp", bundle)
    assert tampered.code == 1 and f"model.gguf: the canister's {MODEL} has sha256" in tampered.stderr


def test_a_bundle_for_another_kind_is_refused_by_deploy_and_verify(
    deploy_world: DeployWorld, tmp_path: Path
) -> None:
    bundle = bundle_of(deploy_world, "llama_cpp", tmp_path / "dist")
    refused = deploy(deploy_world, "gpt2", bundle)
    assert refused.code == 1 and "does not fit canister kind llama_cpp" in refused.stderr
    assert uploads(deploy_world, "gpt2") == 0
    checked = verify(deploy_world, "gpt2", bundle)
    assert checked.code == 1 and "does not fit canister kind llama_cpp" in checked.stderr


def test_verify_names_model_bin_when_the_loaded_llama2c_config_differs(
    deploy_world: DeployWorld, tmp_path: Path
) -> None:
    bundle = bundle_of(deploy_world, "icpp_llama2", tmp_path / "dist")
    assert deploy(deploy_world, "icpp_llama2", bundle).code == 0
    deploy_world.sim.canister("icpp_llama2").config["n_layers"] += 1
    checked = verify(deploy_world, "icpp_llama2", bundle)
    assert checked.code == 1 and "model.bin: the canister's loaded model has n_layers" in checked.stderr
