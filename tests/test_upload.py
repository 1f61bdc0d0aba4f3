"""The upload engine against icsim: every kind uploads, loads and is ready; faults, restarts, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import PrepError
from pipeline.smoke import SmokeRequest, smoke_canister
from pipeline.targets.profile import load_profile
from pipeline.upload.plan import chunk_size_for
from tests.fixtures_ic import write_ed25519_pem
from tests.fixtures_upload import (
    LLAMA_CHUNK,
    EngineRun,
    icsim_client,
    kind_with_chunk_size,
    sha256,
    write_gguf,
)
from tests.icsim import IcSim
from tests.test_upload_cli import prep_args, run_prep
from tests.tinymodels import make_llama2c, make_tiny_model

SMALL_CHUNK = 65_536
UPLOAD_METHODS = {
    "llama_cpp": ("file_upload_chunk",),
    "gpt2": ("append_safetensors_bytes", "append_config_bytes", "append_tokenizer_bytes"),
    "icpp_llama2": ("upload_model_bytes_chunk", "upload_tokenizer_bytes_chunk"),
}


def kind_files(kind: str, tmp_path: Path) -> tuple[Path | str, list[tuple[str, Path, str]]]:
    """The kind to upload to (a small-chunk copy for the append kinds' tiny files) and its files."""
    if kind == "llama_cpp":
        return "llama_cpp", [("model", write_gguf(tmp_path / "model.gguf", 9_500_123), "models/model.gguf")]
    folder = kind_with_chunk_size(kind, tmp_path / f"{kind}_small", SMALL_CHUNK)
    if kind == "gpt2":
        model = make_tiny_model("gpt2", tmp_path / "gpt2")
        return folder, [
            ("safetensors", model / "model.safetensors", "model.safetensors"),
            ("config", model / "config.json", "config.json"),
            ("tokenizer", model / "tokenizer.json", "tokenizer.json"),
        ]
    model_bin, tokenizer_bin = make_llama2c(tmp_path / "llama2c")
    return folder, [("tokenizer", tokenizer_bin, "tokenizer"), ("model", model_bin, "model")]


def assert_uploaded_and_loaded(sim: IcSim, kind: str, files: list[tuple[str, Path, str]]) -> None:
    """The canister holds exactly the local bytes (no byte duplicated or missing) and is loaded."""
    canister = sim.canister(kind)
    local = {role: path.read_bytes() for role, path, _ in files}
    if kind == "llama_cpp":
        assert sha256(canister.file_bytes("models/model.gguf")) == sha256(local["model"])
        assert canister.loaded_model == "models/model.gguf"  # type: ignore[attr-defined]
    elif kind == "gpt2":
        assert sha256(canister.stable_bytes("safetensors")) == sha256(local["safetensors"])  # type: ignore[attr-defined]
        assert sha256(canister.stable_bytes("tokenizer")) == sha256(local["tokenizer"])  # type: ignore[attr-defined]
        assert canister.model_config is not None and canister.tokenizer is not None  # type: ignore[attr-defined]
    else:
        assert sha256(bytes(canister.model_bytes)) == sha256(local["model"])  # type: ignore[attr-defined]
        assert sha256(bytes(canister.tokenizer_bytes)) == sha256(local["tokenizer"])  # type: ignore[attr-defined]
        assert canister.initialized and canister.canister_mode == "chat-principal"  # type: ignore[attr-defined]


def upload_calls(sim: IcSim, kind: str) -> int:
    calls = sim.canister(kind).counters.calls
    return sum(calls[m] for m in UPLOAD_METHODS[kind])


def interrupt_after_chunks(upload_run: EngineRun, chunks: int, *args: Any, **options: Any) -> None:
    """Runs an upload and interrupts it (as Ctrl-C would) once `chunks` chunks were acknowledged."""
    seen = 0

    def interrupt(event: dict) -> None:
        nonlocal seen
        if event["event"] == "chunk":
            seen += 1
            if seen == chunks:
                raise KeyboardInterrupt

    upload_run.on_event = interrupt
    with pytest.raises(KeyboardInterrupt):
        upload_run(*args, **options)
    upload_run.on_event = None


def chunk_count(kind: str | Path, files: list[tuple[str, Path, str]]) -> int:
    profile = load_profile(kind)
    chunk = chunk_size_for(profile.max_chunk_size, concurrent=profile.addressing == "offset")
    return sum(max(1, -(-path.stat().st_size // chunk)) for _, path, _ in files)


@pytest.mark.parametrize("kind", ["llama_cpp", "gpt2", "icpp_llama2"])
def test_full_upload_loads_and_is_ready(
    kind: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files(kind, tmp_path)
    report = upload_run(target, files)
    assert_uploaded_and_loaded(icsim, kind, files)
    assert upload_calls(icsim, kind) == chunk_count(target, files) == report.chunks_sent
    assert report.chunks_resent == 0
    assert upload_run.named("verify") and all(e["ok"] for e in upload_run.named("verify"))
    assert upload_run.named("done")


def test_llama_cpp_window_reads_back_and_rerun_sends_nothing(
    upload_run: EngineRun, icsim: IcSim, model_file: Path
) -> None:
    files = [("model", model_file, "models/model.gguf")]
    upload_run("llama_cpp", files)
    calls = icsim.canister("llama_cpp").counters.calls
    chunks = chunk_count("llama_cpp", files)
    assert calls["file_download_chunk"] >= chunks  # completeness proven by reading back
    again = upload_run("llama_cpp", files)
    assert again.chunks_sent == 0
    assert calls["file_upload_chunk"] == chunks


def test_strict_order_makes_the_canister_sha_match(
    upload_run: EngineRun, icsim: IcSim, model_file: Path
) -> None:
    upload_run("llama_cpp", [("model", model_file, "models/model.gguf")], strict_order=True)
    canister = icsim.canister("llama_cpp")
    assert canister.details["models/model.gguf"]["filesha256"] == sha256(model_file.read_bytes())  # type: ignore[attr-defined]


def test_strict_order_resends_in_order_when_the_canister_sha_is_off(
    upload_run: EngineRun, icsim: IcSim, model_file: Path
) -> None:
    upload_run("llama_cpp", [("model", model_file, "models/model.gguf")], strict_order=True)
    canister = icsim.canister("llama_cpp")
    canister.details["models/model.gguf"]["filesha256"] = "0" * 64  # type: ignore[attr-defined]
    report = upload_run("llama_cpp", [("model", model_file, "models/model.gguf")], strict_order=True)
    assert report.chunks_sent == 6
    assert canister.details["models/model.gguf"]["filesha256"] == sha256(model_file.read_bytes())  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["llama_cpp", "gpt2", "icpp_llama2"])
@pytest.mark.parametrize("fault", ["dropped replies", "5xx storm", "delay past timeout"])
def test_faults_neither_duplicate_nor_lose_bytes(
    kind: str, fault: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files(kind, tmp_path)
    method = UPLOAD_METHODS[kind][0]
    if fault == "dropped replies":
        icsim.faults.drop_replies(3, method=method)
    elif fault == "5xx storm":
        icsim.faults.http_errors(6, status=503)
    else:
        icsim.faults.delay_replies(2, 1.5, method=method)
    upload_run(target, files, timeout=1.0)
    assert_uploaded_and_loaded(icsim, kind, files)
    if kind != "llama_cpp":  # append kinds: every byte executed exactly once
        received = sum(icsim.canister(kind).counters.bytes_in.values())
        assert received == sum(path.stat().st_size for _, path, _ in files)


@pytest.mark.parametrize("kind", ["llama_cpp", "gpt2", "icpp_llama2"])
def test_a_trap_rolls_back_and_the_chunk_is_sent_again(
    kind: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files(kind, tmp_path)
    icsim.faults.trap_on_call(icsim.canister_ids[kind], UPLOAD_METHODS[kind][0], nth=2)
    upload_run(target, files)
    assert_uploaded_and_loaded(icsim, kind, files)
    assert any("trapped" in e["reason"] for e in upload_run.named("retry"))
    if kind != "llama_cpp":
        assert sum(icsim.canister(kind).counters.bytes_in.values()) == sum(
            p.stat().st_size for _, p, _ in files
        )


def test_a_call_unsent_until_it_expires_is_signed_again_exactly_once(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    """The call endpoint fails for longer than the ingress expiry: only then is a fresh call signed."""
    target, files = kind_files("gpt2", tmp_path)
    icsim.faults.http_errors(10**6, status=503, endpoint="call")

    def end_outage_once_expired(event: dict) -> None:
        if event["event"] == "retry" and "expired without executing" in event["reason"]:
            icsim.faults.clear()

    upload_run.on_event = end_outage_once_expired
    upload_run(target, files, expiry_s=2.0)
    assert any("expired without executing" in e["reason"] for e in upload_run.named("retry"))
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert sum(icsim.canister("gpt2").counters.bytes_in.values()) == sum(
        p.stat().st_size for _, p, _ in files
    )


@pytest.mark.parametrize("kind", ["llama_cpp", "gpt2", "icpp_llama2"])
def test_upgrade_mid_upload_restarts_the_files(
    kind: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files(kind, tmp_path)
    cid = icsim.canister_ids[kind]
    chunks_seen = []

    def upgrade_after_two_chunks(event: dict) -> None:
        if event["event"] == "chunk":
            chunks_seen.append(event)
            if len(chunks_seen) == 2:
                icsim.upgrade(cid)

    upload_run.on_event = upgrade_after_two_chunks
    upload_run(target, files)
    assert upload_run.named("restart")
    assert_uploaded_and_loaded(icsim, kind, files)


def test_llama_cpp_after_an_upgrade_rereads_the_file_and_only_reloads(
    upload_run: EngineRun, icsim: IcSim, model_file: Path
) -> None:
    """Its files live in stable memory: an upgrade loses the loaded model, not the file."""
    upload_run("llama_cpp", [("model", model_file, "models/model.gguf")])
    icsim.upgrade(icsim.canister_ids["llama_cpp"])
    canister = icsim.canister("llama_cpp")
    assert canister.loaded_model is None  # type: ignore[attr-defined]
    report = upload_run("llama_cpp", [("model", model_file, "models/model.gguf")])
    assert report.chunks_sent == 0 and report.steps == ["load_model", "set_max_tokens", "ready"]
    assert any(e.get("action") == "reverify" for e in upload_run.named("resume"))
    assert_uploaded_and_loaded(icsim, "llama_cpp", [("model", model_file, "models/model.gguf")])


def test_interrupted_upload_resumes_with_at_most_the_window_resent(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    model = write_gguf(tmp_path / "big.gguf", 40 * LLAMA_CHUNK + 7)
    interrupt_after_chunks(upload_run, 6, "llama_cpp", [("model", model, "models/model.gguf")], window=4)
    upload_run("llama_cpp", [("model", model, "models/model.gguf")], window=4)
    assert_uploaded_and_loaded(icsim, "llama_cpp", [("model", model, "models/model.gguf")])
    assert upload_calls(icsim, "llama_cpp") <= 41 + 4


def test_gpt2_resumes_from_its_length_query(upload_run: EngineRun, icsim: IcSim, tmp_path: Path) -> None:
    target, files = kind_files("gpt2", tmp_path)
    interrupt_after_chunks(upload_run, 5, target, files)
    upload_run(target, files)
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert upload_calls(icsim, "gpt2") == chunk_count(target, files)  # nothing sent twice
    assert any(e.get("action") == "continue" for e in upload_run.named("resume"))


def test_icpp_llama2_cannot_resume_so_it_resets_and_sends_again(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files("icpp_llama2", tmp_path)
    interrupt_after_chunks(upload_run, 4, target, files)
    upload_run(target, files)
    assert_uploaded_and_loaded(icsim, "icpp_llama2", files)  # no byte appended twice
    assert icsim.canister("icpp_llama2").counters.calls["reset_model"] >= 2


@pytest.mark.slow
def test_messages_lost_in_a_replica_restart_are_resent_as_the_same_envelopes(tmp_path: Path) -> None:
    model = write_gguf(tmp_path / "m.gguf", 12 * LLAMA_CHUNK)
    with IcSim(block_interval=0.3) as sim:
        run = EngineRun(sim, tmp_path / "work")
        restarted = []

        def restart_once(event: dict) -> None:
            if event["event"] == "chunk" and event["index"] != 0 and not restarted:
                restarted.append(sim.replica.drop_in_flight())  # what a restart loses, counted
                sim.restart()

        run.on_event = restart_once
        run("llama_cpp", [("model", model, "models/model.gguf")], window=8)
        canister = sim.canister("llama_cpp")
        assert sha256(canister.file_bytes("models/model.gguf")) == sha256(model.read_bytes())
        assert restarted[0] > 0
        assert canister.counters.calls["file_upload_chunk"] == 12  # each chunk executed once


def test_wrong_kind_is_refused_before_any_byte(upload_run: EngineRun, icsim: IcSim, tmp_path: Path) -> None:
    target, files = kind_files("gpt2", tmp_path)
    with pytest.raises(PrepError, match="does not fit canister kind gpt2") as err:
        upload_run(target, files, canister=icsim.canister_ids["llama_cpp"])
    assert "--kind llama_cpp" in str(err.value)
    assert upload_calls(icsim, "llama_cpp") == 0 and upload_calls(icsim, "gpt2") == 0


@pytest.mark.parametrize("kind", ["llama_cpp", "gpt2", "icpp_llama2"])
def test_unauthorised_identity_is_refused_before_any_byte(
    kind: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files(kind, tmp_path)
    stranger = write_ed25519_pem(tmp_path / "stranger.pem")
    with pytest.raises(PrepError, match=f"identity {stranger.principal} may not upload"):
        upload_run(target, files, pem=stranger.path)
    assert upload_calls(icsim, kind) == 0


def test_too_big_or_unloadable_files_are_refused_before_any_byte(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    huge = write_gguf(tmp_path / "huge.gguf", 1000)
    with open(huge, "r+b") as f:
        f.truncate(1_800_000_000)  # sparse: no disk used, never hashed
    with pytest.raises(PrepError, match="over the 1,750,000,000-byte limit"):
        upload_run("llama_cpp", [("model", huge, "models/model.gguf")])
    bert = write_gguf(tmp_path / "bert.gguf", 5000, arch="bert")
    with pytest.raises(PrepError, match="GGUF architecture 'bert'"):
        upload_run("llama_cpp", [("model", bert, "models/model.gguf")])
    assert upload_calls(icsim, "llama_cpp") == 0


def test_a_chunk_the_canister_refuses_fails_at_once_with_its_words(
    upload_run: EngineRun, icsim: IcSim, model_file: Path
) -> None:
    with pytest.raises(PrepError, match="file_upload_chunk failed: the canister says .*bad filename"):
        upload_run("llama_cpp", [("model", model_file, "../outside.gguf")])
    assert upload_calls(icsim, "llama_cpp") == 1


def test_mainnet_needs_confirmation(upload_run: EngineRun, icsim: IcSim, model_file: Path) -> None:
    files = [("model", model_file, "models/model.gguf")]
    with pytest.raises(PrepError, match="to mainnet without confirmation") as err:
        upload_run("llama_cpp", files, mainnet=True)
    assert "--yes" in str(err.value)
    (plan,) = upload_run.named("plan")
    messages = chunk_count("llama_cpp", files)
    assert plan["messages"] == messages
    (budget,) = upload_run.named("budget")  # ingress (1.2 M + 2 K per byte), execution and the load
    assert (
        plan["estimated_cycles"] == budget["estimated_cycles"] > messages * 1_200_000 + plan["bytes"] * 2_000
    )
    assert upload_calls(icsim, "llama_cpp") == 0


def test_a_file_removed_behind_the_journals_back_is_sent_again(
    upload_run: EngineRun, icsim: IcSim, model_file: Path
) -> None:
    files = [("model", model_file, "models/model.gguf")]
    upload_run("llama_cpp", files)
    canister = icsim.canister("llama_cpp")
    canister.file_path("models/model.gguf").unlink()  # type: ignore[attr-defined]
    again = upload_run("llama_cpp", files)
    assert any("the canister holds 0 of" in e["reason"] for e in upload_run.named("resume"))
    assert again.chunks_sent == chunk_count("llama_cpp", files)
    assert_uploaded_and_loaded(icsim, "llama_cpp", files)


GPT2_STEPS = (
    "store_safetensors_bytes_to_stable",
    "load_safetensors_bytes_from_stable",
    "setup_model",
    "store_tokenizer_bytes_to_stable",
    "load_tokenizer_bytes_from_stable",
    "setup_tokenizer",
)


def calls_since(sim: IcSim, kind: str, before: dict[str, int]) -> dict[str, int]:
    """The update and query calls the canister executed since `before` (a copy of its counters)."""
    now = sim.canister(kind).counters.calls
    return {
        method: count - before.get(method, 0)
        for method, count in now.items()
        if count != before.get(method, 0)
    }


def assert_generates(sim: IcSim) -> None:
    with icsim_client(sim) as client:
        answer = smoke_canister(
            client, load_profile("gpt2"), sim.canister_ids["gpt2"], SmokeRequest("Hello", 5)
        )
    assert answer.text


def test_gpt2_after_an_upgrade_restores_its_stable_files_and_resends_only_the_config(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files("gpt2", tmp_path)
    upload_run(target, files)
    canister = icsim.canister("gpt2")
    icsim.upgrade(icsim.canister_ids["gpt2"])
    assert canister.model_config is None and canister.tokenizer is None  # type: ignore[attr-defined]
    before = dict(canister.counters.calls)
    upload_run.events.clear()
    upload_run(target, files)
    calls = calls_since(icsim, "gpt2", before)
    assert "append_safetensors_bytes" not in calls and "append_tokenizer_bytes" not in calls
    config_chunks = chunk_count(target, [f for f in files if f[0] == "config"])
    assert calls["append_config_bytes"] == config_chunks  # heap only: sent again
    assert "store_safetensors_bytes_to_stable" not in calls and "store_tokenizer_bytes_to_stable" not in calls
    for step in ("load_safetensors_bytes_from_stable", "setup_model", "load_tokenizer_bytes_from_stable"):
        assert calls[step] == 1
    assert calls["setup_tokenizer"] == 1
    actions = {e["role"]: e["action"] for e in upload_run.named("resume")}
    assert actions == {"safetensors": "restore", "config": "restart", "tokenizer": "restore"}
    restored = [e for e in upload_run.named("verify") if e["method"] == "restored length"]
    sizes = {role: path.stat().st_size for role, path, _ in files}
    assert {e["role"]: e["bytes"] for e in restored} == {
        "safetensors": sizes["safetensors"],
        "tokenizer": sizes["tokenizer"],
    }
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert_generates(icsim)
    before = dict(canister.counters.calls)
    report = upload_run(target, files)  # nothing changed since: nothing to do
    assert report.chunks_sent == 0 and report.steps == []
    assert not any(m in calls_since(icsim, "gpt2", before) for m in (*UPLOAD_METHODS["gpt2"], *GPT2_STEPS))


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_gpt2_sends_again_when_its_stable_copy_is_not_the_file(
    damage: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files("gpt2", tmp_path)
    upload_run(target, files)
    canister = icsim.canister("gpt2")
    stored = canister.stable_dir / "safetensors.bin"
    if damage == "truncated":
        stored.write_bytes(stored.read_bytes()[:-1])
    else:
        stored.unlink()
    icsim.upgrade(icsim.canister_ids["gpt2"])
    before = dict(canister.counters.calls)
    upload_run(target, files)
    calls = calls_since(icsim, "gpt2", before)
    assert calls["append_safetensors_bytes"] == chunk_count(
        target, [f for f in files if f[0] == "safetensors"]
    )
    assert "append_tokenizer_bytes" not in calls
    why = next(
        e["reason"]
        for e in upload_run.named("resume")
        if e["role"] == "safetensors" and e["action"] == "restart"
    )
    assert ("holds" in why) if damage == "truncated" else ("could not be restored" in why)
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert_generates(icsim)


def test_icpp_llama2_after_an_upgrade_resets_and_sends_everything(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files("icpp_llama2", tmp_path)
    upload_run(target, files)
    icsim.upgrade(icsim.canister_ids["icpp_llama2"])
    before = upload_calls(icsim, "icpp_llama2")
    upload_run(target, files)
    assert upload_calls(icsim, "icpp_llama2") - before == chunk_count(target, files)
    assert {e["action"] for e in upload_run.named("resume")} == {"restart"}
    assert_uploaded_and_loaded(icsim, "icpp_llama2", files)


def die_while_a_step_is_in_flight(
    upload_run: EngineRun, sim: IcSim, target: Path | str, files: list, step: str
) -> None:
    """Runs the upload; `step` executes but its reply comes late, and the run dies waiting for it."""
    sim.faults.delay_replies(1, 3.0, method=step)
    waiting_for: list[str] = []

    def die(event: dict) -> None:
        if event["event"] == "step":
            waiting_for[:] = [event["method"]]
        elif event["event"] == "retry" and waiting_for == [step]:
            raise KeyboardInterrupt

    upload_run.on_event = die
    with pytest.raises(KeyboardInterrupt):
        upload_run(target, files, timeout=1.0)
    upload_run.on_event = None


@pytest.mark.parametrize("step", GPT2_STEPS)
def test_a_run_killed_during_a_step_settles_it_instead_of_running_it_again(
    step: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    """The step executes, its reply is late and the process dies waiting: the next run resends the
    journaled envelope (the replica answers it from its record) and goes on with the next step."""
    target, files = kind_files("gpt2", tmp_path)
    die_while_a_step_is_in_flight(upload_run, icsim, target, files, step)
    canister = icsim.canister("gpt2")
    assert canister.counters.calls[step] == 1
    upload_run(target, files)
    assert any(e.get("action") == "settled" and e["executed"] for e in upload_run.named("resume"))
    assert all(canister.counters.calls[s] == 1 for s in GPT2_STEPS)
    assert upload_calls(icsim, "gpt2") == chunk_count(target, files)
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert_generates(icsim)


def test_a_trapped_step_is_signed_again_and_runs_once(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files("gpt2", tmp_path)
    icsim.faults.trap_on_call(icsim.canister_ids["gpt2"], "store_safetensors_bytes_to_stable")
    upload_run(target, files)
    assert icsim.faults.fired["trap"] == 1
    assert any("trapped" in e["reason"] for e in upload_run.named("retry"))
    assert all(icsim.canister("gpt2").counters.calls[s] == 1 for s in GPT2_STEPS)
    assert_uploaded_and_loaded(icsim, "gpt2", files)


@pytest.mark.slow
def test_sigkill_while_a_step_executes_then_rerun_runs_it_once(
    icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    """`prep upload` killed -9 while store_* has executed but not answered yet."""
    kind = kind_with_chunk_size("gpt2", tmp_path / "gpt2", SMALL_CHUNK)
    weights = make_tiny_model("gpt2", tmp_path / "model") / "model.safetensors"
    args = prep_args(icsim, kind, weights, "--remote", "safetensors")
    calls = icsim.canister("gpt2").counters.calls
    icsim.faults.delay_replies(1, 5.0, method="store_safetensors_bytes_to_stable")
    proc = subprocess.Popen(args, env=prep_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while calls["store_safetensors_bytes_to_stable"] == 0 and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    code, events, stderr = run_prep(args, prep_env)
    assert code == 0, stderr
    assert any(e.get("action") == "settled" and e["executed"] for e in events if e["event"] == "resume")
    assert (
        calls["store_safetensors_bytes_to_stable"] == 1 and calls["load_safetensors_bytes_from_stable"] == 1
    )
    assert calls["append_safetensors_bytes"] == -(-weights.stat().st_size // SMALL_CHUNK)
    assert sha256(icsim.canister("gpt2").stable_bytes("safetensors")) == sha256(weights.read_bytes())  # type: ignore[attr-defined]


def test_gpt2_a_new_config_alone_loads_the_kept_weights_again_for_setup_model(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    """setup_model uses up the safetensors heap buffer: a later run that only changes the config must
    load the weights back from stable memory first, not send them again nor fail."""
    target, files = kind_files("gpt2", tmp_path)
    upload_run(target, files)
    config = next(path for role, path, _ in files if role == "config")
    config.write_text(json.dumps(json.loads(config.read_text()), indent=4))  # same model, other bytes
    canister = icsim.canister("gpt2")
    before = dict(canister.counters.calls)
    upload_run(target, files)
    calls = calls_since(icsim, "gpt2", before)
    assert "append_safetensors_bytes" not in calls and "append_tokenizer_bytes" not in calls
    assert calls["load_safetensors_bytes_from_stable"] == 1 and calls["setup_model"] == 1
    assert calls["append_config_bytes"] >= 1
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert_generates(icsim)


def test_gpt2_upgraded_mid_run_after_its_weights_were_stored_restores_them(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    """An upgrade while the tokenizer is sent: the stored weights are loaded back, config and tokenizer
    (heap only at that point) are sent again."""
    target, files = kind_files("gpt2", tmp_path)
    cid = icsim.canister_ids["gpt2"]
    upgraded: list[bool] = []

    def upgrade_at_the_first_tokenizer_chunk(event: dict) -> None:
        if event["event"] == "chunk" and event["role"] == "tokenizer" and not upgraded:
            upgraded.append(True)
            icsim.upgrade(cid)

    upload_run.on_event = upgrade_at_the_first_tokenizer_chunk
    upload_run(target, files)
    assert upload_run.named("restart")
    calls = icsim.canister("gpt2").counters.calls
    by_role = {role: chunk_count(target, [f for f in files if f[0] == role]) for role, _, _ in files}
    assert calls["append_safetensors_bytes"] == by_role["safetensors"]  # never sent twice
    assert calls["append_config_bytes"] == 2 * by_role["config"]
    assert calls["load_safetensors_bytes_from_stable"] == 2 and calls["setup_model"] == 2
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert_generates(icsim)


@pytest.mark.parametrize("next_step", GPT2_STEPS[1:])
def test_a_run_killed_between_steps_goes_on_with_the_next_one(
    next_step: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files("gpt2", tmp_path)

    def die_before(event: dict) -> None:
        if event["event"] == "step" and event["method"] == next_step:
            raise KeyboardInterrupt

    upload_run.on_event = die_before
    with pytest.raises(KeyboardInterrupt):
        upload_run(target, files)
    upload_run.on_event = None
    upload_run(target, files)
    calls = icsim.canister("gpt2").counters.calls
    assert all(calls[s] == 1 for s in GPT2_STEPS)
    assert upload_calls(icsim, "gpt2") == chunk_count(target, files)
    assert_uploaded_and_loaded(icsim, "gpt2", files)


def test_a_forged_read_back_is_refused(upload_run: EngineRun, icsim: IcSim, tmp_path: Path) -> None:
    """A node that lies about the file's bytes cannot confirm the upload: its answers are not signed
    by a node of the subnet (issue #9 item 11)."""
    from pipeline.ic.errors import QuerySignatureError

    target, files = kind_files("llama_cpp", tmp_path)
    icsim.faults.forge_query_signatures(10**6, method="file_download_chunk")
    with pytest.raises(QuerySignatureError, match="file_download_chunk .* does not verify"):
        upload_run(target, files)
    assert icsim.faults.fired["forge"] >= 1


def refuse_then_rerun(
    upload_run: EngineRun, sim: IcSim, kind: str, target: Path | str, files: list, refusal: str
) -> None:
    """Reruns with the next call refused (HTTP 400), or with the canister out of cycles until the first
    rerun gave up; then once more with nothing refused."""
    cid = sim.canister_ids[kind]
    if refusal == "HTTP 400":
        sim.faults.http_errors(1, status=400, endpoint="call")
    else:
        sim.faults.out_of_cycles(cid)
    try:  # a journaled step is settled from its certified status first; then nothing more can go
        upload_run(target, files)
    except PrepError as err:
        assert "IC0207" in str(err) or "HTTP 400" in str(err)
    sim.faults.out_of_cycles(cid, exhausted=False)
    upload_run(target, files)


@pytest.mark.parametrize("refusal", ["HTTP 400", "out of cycles"])
@pytest.mark.parametrize("step", GPT2_STEPS)
def test_a_refused_resend_of_a_step_in_flight_proves_nothing(
    step: str, refusal: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    """Killed while a step executes; the next run's resend of its envelope is refused. Only the
    certified status decides: the step (store_* empties the heap buffer) never runs twice."""
    target, files = kind_files("gpt2", tmp_path)
    die_while_a_step_is_in_flight(upload_run, icsim, target, files, step)
    refuse_then_rerun(upload_run, icsim, "gpt2", target, files, refusal)
    settled = [e for e in upload_run.named("resume") if e.get("action") == "settled"]
    assert settled and all(e["executed"] for e in settled)
    calls = icsim.canister("gpt2").counters.calls
    assert all(calls[s] == 1 for s in GPT2_STEPS), {s: calls[s] for s in GPT2_STEPS}
    assert upload_calls(icsim, "gpt2") == chunk_count(target, files)
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert_generates(icsim)


@pytest.mark.parametrize("refusal", ["HTTP 400", "out of cycles"])
@pytest.mark.parametrize(
    ("kind", "step"),
    [
        ("llama_cpp", "load_model"),
        ("llama_cpp", "set_max_tokens"),
        ("icpp_llama2", "initialize"),
        ("icpp_llama2", "set_canister_mode"),
    ],
)
def test_a_load_step_in_flight_then_a_refusal_ends_loaded(
    kind: str, step: str, refusal: str, upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    """The load steps are idempotent (loading, setting max tokens, initialising again changes nothing),
    so a killed run's load step is run again; a refusal on the way only delays it, and nothing is sent
    twice."""
    target, files = kind_files(kind, tmp_path)
    die_while_a_step_is_in_flight(upload_run, icsim, target, files, step)
    refuse_then_rerun(upload_run, icsim, kind, target, files, refusal)
    assert upload_calls(icsim, kind) == chunk_count(target, files)
    assert_uploaded_and_loaded(icsim, kind, files)


def test_a_step_that_leaves_the_wrong_length_stops_the_run_before_the_next_step(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files("gpt2", tmp_path)
    canister = icsim.canister("gpt2")
    stored = canister.stable_dir / "safetensors.bin"

    def lose_a_byte_in_stable_memory(event: dict) -> None:
        if event["event"] == "step" and event["method"] == "load_safetensors_bytes_from_stable":
            stored.write_bytes(stored.read_bytes()[:-1])

    upload_run.on_event = lose_a_byte_in_stable_memory
    with pytest.raises(PrepError, match="after load_safetensors_bytes_from_stable .* expected"):
        upload_run(target, files)
    assert canister.counters.calls["setup_model"] == 0
    upload_run.on_event = None
    upload_run(target, files)  # sends the weights again
    assert_uploaded_and_loaded(icsim, "gpt2", files)
