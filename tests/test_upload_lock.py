"""Two `prep upload` processes on one canister file: the second fails at once naming the first's pid, or
waits for it with --wait; either way the file is sent once. kill -9 leaves no lock behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from pipeline.targets.profile import load_profile
from tests.fixtures_upload import LLAMA_CHUNK, kind_with_chunk_size, sha256, write_gguf
from tests.icsim import IcSim
from tests.test_upload_cli import prep_args, run_prep
from tests.tinymodels import make_tiny_model


def stalled_upload(icsim: IcSim, kind: str, tmp_path: Path) -> tuple[list[str], Path, str]:
    """Arguments of an upload whose every chunk reply comes 3 s late until the test clears icsim's
    faults (the first process holds the lock meanwhile), the file, and the upload method."""
    if kind == "llama_cpp":
        model = write_gguf(tmp_path / "m.gguf", 3 * LLAMA_CHUNK - 5)
        method, args = "file_upload_chunk", prep_args(icsim, "llama_cpp", model, "--window", "1")
    else:
        folder = kind_with_chunk_size("gpt2", tmp_path / "gpt2", 16_384)
        model = make_tiny_model("gpt2", tmp_path / "model") / "model.safetensors"
        method, args = "append_safetensors_bytes", prep_args(icsim, folder, model, "--remote", "safetensors")
    icsim.faults.delay_replies(10**6, 3.0, method=method)
    return args, model, method


def start_and_wait_for_plan(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Starts prep; returns once it printed its plan (it holds the lock from before the plan)."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).get("event") == "plan":
            return proc
    raise AssertionError(f"prep ended before its plan: {proc.communicate()[1]}")


@pytest.mark.parametrize("kind", ["llama_cpp", "gpt2"])
def test_a_second_process_fails_at_once_or_waits_and_the_file_is_sent_once(
    kind: str, icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    args, model, method = stalled_upload(icsim, kind, tmp_path)
    first = start_and_wait_for_plan(args, prep_env)
    pipes = {"env": prep_env, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    refused = subprocess.Popen(args, **pipes)  # type: ignore[call-overload]
    waiting = subprocess.Popen([*args, "--wait"], **pipes)  # type: ignore[call-overload]
    _, refused_err = refused.communicate(timeout=120)
    assert refused.returncode == 1
    assert f"process {first.pid} is uploading the same canister file" in refused_err
    assert "--wait" in refused_err
    assert waiting.stdout is not None
    said = json.loads(waiting.stdout.readline())  # it says whom it waits for, then waits
    assert said["event"] == "waiting" and said["holder"] == first.pid
    assert first.poll() is None and waiting.poll() is None
    icsim.faults.clear()  # the first upload's replies come at once now
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    waited_out, waited_err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, waited_err
    events = [json.loads(line) for line in waited_out.splitlines()]
    assert events[-1]["bytes_sent"] == 0
    canister = icsim.canister(kind)
    # --window 1 sends one chunk at a time, at the profile's largest size
    chunk = load_profile("llama_cpp").max_chunk_size if kind == "llama_cpp" else 16_384
    assert canister.counters.calls[method] == -(-model.stat().st_size // chunk)  # every chunk sent once
    if kind == "llama_cpp":
        assert sha256(canister.file_bytes("models/model.gguf")) == sha256(model.read_bytes())
    else:
        assert sha256(canister.stable_bytes("safetensors")) == sha256(model.read_bytes())


def test_kill_9_leaves_no_lock_behind(icsim: IcSim, tmp_path: Path, prep_env: dict[str, str]) -> None:
    args, model, _ = stalled_upload(icsim, "llama_cpp", tmp_path)
    first = start_and_wait_for_plan(args, prep_env)
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=60)
    icsim.faults.clear()
    code, _, stderr = run_prep(args, prep_env)
    assert code == 0, stderr
    assert sha256(icsim.canister("llama_cpp").file_bytes("models/model.gguf")) == sha256(model.read_bytes())
