"""`prep upload` as a process: --json events, kill -9 at a random chunk then rerun, refusals, --status."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_upload import LLAMA_CHUNK, kind_with_chunk_size, sha256, write_gguf
from tests.icsim import IcSim
from tests.tinymodels import make_tiny_model


def prep_args(
    sim: IcSim, kind: str | Path, path: Path, *extra: str, canister: str | None = None
) -> list[str]:
    target = canister or sim.canister_ids[Path(kind).name if Path(kind).is_dir() else str(kind)]
    return [
        sys.executable, "-m", "pipeline", "upload", "--file", str(path), "--kind", str(kind),
        "--network", sim.url, "--canister", target, "--pem", str(sim.dev_identity_pem),
        "--yes", "--json", *extra,
    ]  # fmt: skip


def run_prep(args: list[str], env: dict[str, str]) -> tuple[int, list[dict], str]:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, events, done.stderr


def kill_after_chunks(
    args: list[str], env: dict[str, str], chunks: int, sig: signal.Signals = signal.SIGKILL
) -> tuple[int, str]:
    """Starts prep, reads its --json events, sends `sig` after `chunks` chunk events; (exit code, stderr)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("event") == "chunk":
            seen += 1
            if seen == chunks:
                os.kill(proc.pid, sig)
                break
    _, stderr = proc.communicate(timeout=60)
    assert seen == chunks, "prep finished before it could be stopped"
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    return proc.returncode, stderr


def test_adhoc_upload_emits_json_events_and_loads(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    model = write_gguf(tmp_path / "m.gguf", 3 * LLAMA_CHUNK - 1_000)
    code, events, stderr = run_prep(prep_args(icsim, "llama_cpp", model), prep_env)
    assert code == 0, stderr
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["budget", "plan"] and kinds.count("chunk") == 3  # budget: cycles and heap checked
    assert {"verify", "step", "done", "result"} <= set(kinds)
    assert events[-1]["steps"] == ["load_model", "set_max_tokens", "ready"]
    flow = events[-1]["flow"]  # the window the upload reached and what sized it
    assert flow["adaptive"] and flow["peak_window"] >= flow["window"] >= 2 and flow["min_rtt_s"] > 0
    assert sha256(icsim.canister("llama_cpp").file_bytes("models/model.gguf")) == sha256(model.read_bytes())


@pytest.mark.slow
def test_sigkill_at_a_random_chunk_then_rerun_completes(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    chunks = 40
    model = write_gguf(tmp_path / "m.gguf", chunks * LLAMA_CHUNK - 11)
    args = prep_args(icsim, "llama_cpp", model, "--window", "8")
    kill_after_chunks(args, prep_env, random.Random(os.getpid()).randint(2, 20))
    code, events, stderr = run_prep(args, prep_env)
    assert code == 0, stderr
    assert any(e["event"] == "resume" for e in events)
    canister = icsim.canister("llama_cpp")
    assert sha256(canister.file_bytes("models/model.gguf")) == sha256(model.read_bytes())
    assert canister.counters.calls["file_upload_chunk"] <= chunks + 8  # at most the in-flight window again


@pytest.mark.slow
def test_sigkill_of_an_append_upload_duplicates_nothing(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    kind = kind_with_chunk_size("gpt2", tmp_path / "gpt2", 16_384)
    weights = make_tiny_model("gpt2", tmp_path / "model") / "model.safetensors"
    args = prep_args(icsim, kind, weights, "--remote", "safetensors")
    kill_after_chunks(args, prep_env, random.Random(os.getpid()).randint(2, 20))
    code, _, stderr = run_prep(args, prep_env)
    assert code == 0, stderr
    canister = icsim.canister("gpt2")
    assert sha256(canister.stable_bytes("safetensors")) == sha256(weights.read_bytes())
    chunk_total = -(-weights.stat().st_size // 16_384)
    assert canister.counters.calls["append_safetensors_bytes"] == chunk_total  # resumed from its length


def test_wrong_kind_exits_non_zero_before_any_byte(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    weights = make_tiny_model("gpt2", tmp_path / "model") / "model.safetensors"
    args = prep_args(
        icsim, "gpt2", weights, "--remote", "safetensors", canister=icsim.canister_ids["icpp_llama2"]
    )
    code, events, stderr = run_prep(args, prep_env)
    assert code == 1
    assert "does not fit canister kind gpt2" in stderr and "--kind icpp_llama2" in stderr
    assert events[-1]["event"] == "error"
    assert sum(icsim.canister("icpp_llama2").counters.calls.values()) == 0


def test_status_shows_journal_and_canister_without_sending(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    model = write_gguf(tmp_path / "m.gguf", 2_000_000)
    assert run_prep(prep_args(icsim, "llama_cpp", model), prep_env)[0] == 0
    calls_before = sum(icsim.canister("llama_cpp").counters.calls.values())
    code, events, stderr = run_prep(prep_args(icsim, "llama_cpp", model, "--status"), prep_env)
    assert code == 0, stderr
    (row,) = events[-1]["files"]
    assert row["bytes_complete"] and row["canister_bytes"] == 2_000_000 and row["in_flight"] == 0
    calls = icsim.canister("llama_cpp").counters.calls
    # its size, and its details to compare with what the canister reported when the upload ended
    assert sum(calls.values()) == calls_before + 2 and calls["uploaded_file_details"] >= 1
    assert row["canister_agrees"] and row["canister_view"] == row["recorded_view"]


def test_recipe_form_uploads_the_built_artifact(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    from pipeline.manifest import artifact_from_file, write_manifest

    stage_dir = tmp_path / "work" / "smollm2-135m" / "build"
    stage_dir.mkdir(parents=True)
    model = write_gguf(stage_dir / "model.gguf", 3_000_000)
    write_manifest(
        stage_dir, stage="build", recipe="smollm2-135m", inputs=[], params={}, tools={},
        artifacts=[artifact_from_file("model", model)],
    )  # fmt: skip
    args = [
        sys.executable, "-m", "pipeline", "upload", "smollm2-135m", "--network", icsim.url,
        "--canister", icsim.canister_ids["llama_cpp"], "--pem", str(icsim.dev_identity_pem),
        "--yes", "--json",
    ]  # fmt: skip
    code, events, stderr = run_prep(args, prep_env)
    assert code == 0, stderr
    canister = icsim.canister("llama_cpp")
    assert sha256(canister.file_bytes("models/model.gguf")) == sha256(model.read_bytes())
    assert canister.loaded_model == "models/model.gguf"
    assert canister.max_tokens == {"max_tokens_update": 10, "max_tokens_query": 1}


def test_recipe_form_without_a_build_says_what_to_run(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    args = [
        sys.executable, "-m", "pipeline", "upload", "smollm2-135m", "--network", icsim.url,
        "--canister", icsim.canister_ids["llama_cpp"], "--pem", str(icsim.dev_identity_pem), "--yes",
    ]  # fmt: skip
    code, _, stderr = run_prep(args, prep_env)
    assert code == 1 and "prep build smollm2-135m" in stderr


def test_adhoc_roles_one_by_one_load_once_all_are_in(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    from tests.tinymodels import make_llama2c

    model_bin, tokenizer_bin = make_llama2c(tmp_path / "llama2c")
    code, events, stderr = run_prep(
        prep_args(icsim, "icpp_llama2", tokenizer_bin, "--remote", "tokenizer"), prep_env
    )
    assert code == 0, stderr
    assert [e["missing"] for e in events if e["event"] == "steps_skipped"] == [["model"]]
    code, events, stderr = run_prep(prep_args(icsim, "icpp_llama2", model_bin, "--remote", "model"), prep_env)
    assert code == 0, stderr
    assert events[-1]["steps"][-3:] == ["initialize", "set_canister_mode", "ready"]
    canister = icsim.canister("icpp_llama2")
    assert bytes(canister.tokenizer_bytes) == tokenizer_bin.read_bytes()
    assert bytes(canister.model_bytes) == model_bin.read_bytes()


@pytest.mark.slow
def test_ctrl_c_exits_130_with_a_hint_and_a_rerun_finishes(tmp_path: Path, prep_env: dict[str, str]) -> None:
    chunks = 12
    model = write_gguf(tmp_path / "m.gguf", chunks * LLAMA_CHUNK)
    with IcSim(block_interval=0.2) as sim:
        args = prep_args(sim, "llama_cpp", model, "--window", "2")
        code, stderr = kill_after_chunks(args, prep_env, 3, signal.SIGINT)
        assert code == 130
        assert "interrupted: run the same command again" in stderr
        code, events, stderr = run_prep(args, prep_env)
        assert code == 0, stderr
        assert sha256(sim.canister("llama_cpp").file_bytes("models/model.gguf")) == sha256(model.read_bytes())
