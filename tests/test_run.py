"""`prep run` end to end: hubsim (tiny models) -> fetch -> build -> icsim upload -> load -> smoke."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.recipes import load_recipe
from pipeline.stages import StageFailed, run_recipe
from pipeline.workspace import Workspace
from tests.fixtures_run import PROJECT, DeployWorld
from tests.fixtures_upload import icsim_client, kind_with_chunk_size

KINDS = ("llama_cpp", "gpt2", "icpp_llama2")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canister_holds(world: DeployWorld, kind: str, artifacts: dict[str, dict]) -> None:
    """The emulated canister holds exactly the built bytes (or, for gpt2, is set up from them)."""
    canister = world.sim.canister(kind)
    if kind == "llama_cpp":
        assert sha256(canister.file_bytes("models/model.gguf")) == artifacts["model"]["sha256"]
    elif kind == "icpp_llama2":
        assert sha256(bytes(canister.model_bytes)) == artifacts["model"]["sha256"]
        assert sha256(bytes(canister.tokenizer_bytes)) == artifacts["tokenizer"]["sha256"]
    else:
        assert sha256(canister.stable_bytes("safetensors")) == artifacts["safetensors"]["sha256"]
        assert canister.model_config is not None and canister.tokenizer is not None


@pytest.mark.parametrize("kind", KINDS)
def test_run_deploys_and_a_rerun_skips_every_stage(deploy_world: DeployWorld, kind: str) -> None:
    first = deploy_world.prep(*deploy_world.run_args(kind, "--json"))
    assert first.code == 0, first.stderr
    summary = first.result
    statuses = {s["stage"]: s["status"] for s in summary["stages"]}
    assert list(statuses) == ["fetch", "build", "upload", "load", "smoke"]
    assert statuses["fetch"] == "ran" and statuses["build"] == "ran" and statuses["upload"] == "ran"
    assert statuses["smoke"] == "ran" and summary["smoke"]["passed"]
    upload = next(s for s in summary["stages"] if s["stage"] == "upload")
    assert upload["data"]["bytes_sent"] == sum(a["size"] for a in summary["artifacts"].values())
    assert upload["data"]["mb_per_s"] > 0
    canister_holds(deploy_world, kind, summary["artifacts"])
    stage_events = [e for e in first.events if e["event"] == "stage" and e["status"] != "started"]
    assert [e["stage"] for e in stage_events] == list(statuses)
    assert any(e["event"] == "chunk" and e["stage"] == "upload" for e in first.events)

    calls_before = dict(deploy_world.sim.canister(kind).counters.calls)
    again = deploy_world.prep(*deploy_world.run_args(kind, "--json"))
    assert again.code == 0, again.stderr
    assert [s["status"] for s in again.result["stages"]] == ["skipped"] * 5
    reasons = {s["stage"]: s["reason"] for s in again.result["stages"]}
    assert reasons["build"] == "inputs, parameters, tool versions and outputs unchanged"
    assert "agree" in reasons["upload"] and all(reasons.values()), reasons
    first_reasons = {s["stage"]: s["reason"] for s in summary["stages"]}
    assert first_reasons["build"].startswith("not built yet") and first_reasons["upload"] == "new upload"
    assert again.result["smoke"]["text"] == summary["smoke"]["text"]
    assert not any(e["event"] == "chunk" for e in again.events)
    # The rerun only asked questions (queries): no update call reached the canister.
    canister = deploy_world.sim.canister(kind)
    methods = type(canister).methods()
    called = {m: n - calls_before.get(m, 0) for m, n in canister.counters.calls.items()}
    assert {m for m, n in called.items() if n and methods[m].kind == "update"} == set()


def test_human_summary_names_stages_sizes_and_sha256(deploy_world: DeployWorld) -> None:
    done = deploy_world.prep(*deploy_world.run_args("icpp_llama2"))
    assert done.code == 0, done.stderr
    lines = done.stdout.splitlines()
    for stage in ("fetch", "build", "upload", "load", "smoke"):
        assert any(line.split()[:1] == [stage] for line in lines), done.stdout
    artifacts = json.loads((deploy_world.workdir / "stories15m" / "build" / "manifest.json").read_text())[
        "outputs"
    ]
    for output in artifacts:
        assert output["sha256"] in done.stdout and f"{output['size']:,} B" in done.stdout
    assert "MB/s" in done.stdout and "answer:" in done.stdout


def test_a_changed_canister_is_uploaded_again(deploy_world: DeployWorld) -> None:
    assert deploy_world.prep(*deploy_world.run_args("llama_cpp")).code == 0
    deploy_world.sim.canister("llama_cpp").file_path("models/model.gguf").unlink()
    again = deploy_world.prep(*deploy_world.run_args("llama_cpp", "--json"))
    assert again.code == 0, again.stderr
    statuses = {s["stage"]: s["status"] for s in again.result["stages"]}
    assert statuses == {
        "fetch": "skipped",
        "build": "skipped",
        "upload": "ran",
        "load": "ran",
        "smoke": "ran",
    }
    upload = next(s for s in again.result["stages"] if s["stage"] == "upload")
    assert "model: the canister does not hold what the journal says" in upload["reason"], upload
    canister_holds(deploy_world, "llama_cpp", again.result["artifacts"])


def test_a_canister_upgrade_reloads_and_smokes_again(deploy_world: DeployWorld) -> None:
    assert deploy_world.prep(*deploy_world.run_args("icpp_llama2")).code == 0
    deploy_world.sim.upgrade(deploy_world.sim.canister_ids["icpp_llama2"])  # the heap (and the model) is gone
    again = deploy_world.prep(*deploy_world.run_args("icpp_llama2", "--json"))
    assert again.code == 0, again.stderr
    statuses = [s["status"] for s in again.result["stages"]]
    assert statuses == ["skipped", "skipped", "ran", "ran", "ran"]
    canister_holds(deploy_world, "icpp_llama2", again.result["artifacts"])


def test_run_names_the_failing_stage(deploy_world: DeployWorld) -> None:
    args = deploy_world.run_args("llama_cpp", "--json")
    args[args.index("--canister") + 1] = deploy_world.sim.canister_ids["gpt2"]  # the wrong kind
    failed = deploy_world.prep(*args)
    assert failed.code == 1
    assert "upload failed" in failed.stderr
    stages = [e for e in failed.events if e["event"] == "stage" and e["status"] != "started"]
    assert [(e["stage"], e["status"]) for e in stages][-1] == ("upload", "failed")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llama_cpp", "icpp_llama2"])
def test_sigkill_mid_upload_then_rerun_completes(
    deploy_world: DeployWorld, tmp_path: Path, kind: str
) -> None:
    canisters = tmp_path / "canisters"
    for name in KINDS:  # small chunks: the tiny models take dozens of messages
        kind_with_chunk_size(name, canisters / name, 16_000)
    env = dict(os.environ, PREP_CANISTERS_DIR=str(canisters))
    args = [sys.executable, "-m", "pipeline", *deploy_world.run_args(kind, "--json", "--window", "2")]
    proc = subprocess.Popen(
        args, env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    chunks = 0
    for line in proc.stdout:
        if json.loads(line).get("event") == "chunk":
            chunks += 1
            if chunks == 5:
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "prep run finished before it could be killed"

    rerun = deploy_world.prep_process(*deploy_world.run_args(kind, "--json", "--window", "2"), env=env)
    assert rerun.code == 0, rerun.stderr
    statuses = {s["stage"]: s["status"] for s in rerun.result["stages"]}
    assert statuses["fetch"] == "skipped" and statuses["build"] == "skipped"
    assert statuses["upload"] in ("resumed", "ran") and statuses["smoke"] == "ran"
    assert any(e["event"] == "resume" for e in rerun.events)
    canister_holds(deploy_world, kind, rerun.result["artifacts"])
    total = sum(a["size"] for a in rerun.result["artifacts"].values())
    upload = next(s for s in rerun.result["stages"] if s["stage"] == "upload")
    if kind == "llama_cpp":  # offset-addressed: only what was not acknowledged is sent again
        assert upload["data"]["bytes_sent"] < total
    shutil.rmtree(canisters)


def test_mainnet_run_asks_once_and_a_refusal_sends_nothing(deploy_world: DeployWorld) -> None:
    recipe = load_recipe(deploy_world.recipe("icpp_llama2"))
    canister_id = deploy_world.sim.canister_ids["icpp_llama2"]
    plans: list[dict] = []
    with icsim_client(deploy_world.sim, mainnet=True) as client, pytest.raises(StageFailed) as refused:
        run_recipe(
            recipe, client, canister_id, Workspace.default(), confirm=lambda plan: plans.append(plan) or False
        )
    assert refused.value.stage == "upload" and "--yes" in str(refused.value)
    assert deploy_world.sim.canister("icpp_llama2").counters.bytes_in == {}
    assert len(plans) == 1 and plans[0]["estimated_cycles"] > 0

    plans.clear()
    with icsim_client(deploy_world.sim, mainnet=True) as client:
        report = run_recipe(
            recipe, client, canister_id, Workspace.default(), confirm=lambda plan: plans.append(plan) or True
        )
    assert len(plans) == 1  # the load stage does not ask again
    assert [s.status for s in report.stages][2:] == ["ran", "ran", "ran"]
