"""Fleets with real `prep` processes against a two-subnet icsim (2 llama_cpp canisters on each): every
canister ends byte-identical with each chunk executed once; a kill -9 mid-fleet resumes; a canister that
fails (out of cycles, a trap on load) does not stop the others, and the printed retry command finishes
it; --json events name the canister and its subnet; `prep run --fleet` builds once and smokes each."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_run import PROJECT, prep_in_process
from tests.fixtures_upload import LLAMA_CHUNK, write_gguf
from tests.hubsim.world import TinyWorld
from tests.icsim import IcSim
from tests.test_upload_cli import run_prep

REMOTE = "models/model.gguf"


@pytest.fixture
def fleet_sim() -> Iterator[IcSim]:
    with IcSim(subnets=2, canisters_per_subnet=2) as sim:
        yield sim


def fleet_ids(sim: IcSim) -> list[str]:
    return [h.principal for h in sim.hosted if h.kind == "llama_cpp"]


def upload_args(sim: IcSim, model: Path, *extra: str) -> list[str]:
    canisters = [word for cid in fleet_ids(sim) for word in ("--canister", cid)]
    return [
        sys.executable, "-m", "pipeline", "upload", "--file", str(model), "--kind", "llama_cpp",
        "--network", sim.url, "--pem", str(sim.dev_identity_pem), "--yes", "--json", *canisters, *extra,
    ]  # fmt: skip


def executed_offsets(sim: IcSim, canister: str) -> list[int | None]:
    return [
        u.offset
        for u in sim.updates
        if u.canister == canister and u.method == "file_upload_chunk" and u.outcome == "replied"
    ]


def assert_every_canister_holds(sim: IcSim, model: Path, chunks: int) -> None:
    """Byte-identical everywhere, each chunk executed exactly once per canister."""
    for cid in fleet_ids(sim):
        assert sim.canister(cid).file_bytes(REMOTE) == model.read_bytes(), cid
        offsets = executed_offsets(sim, cid)
        assert len(offsets) == chunks and len(set(offsets)) == chunks, (cid, offsets)


def test_a_fleet_upload_fills_every_canister_once_and_every_event_names_its_canister(
    fleet_sim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    model = write_gguf(tmp_path / "m.gguf", 3 * LLAMA_CHUNK + 4321)
    code, events, stderr = run_prep(upload_args(fleet_sim, model), prep_env)
    assert code == 0, stderr
    assert_every_canister_holds(fleet_sim, model, 4)
    result = events[-1]
    assert result["event"] == "result" and result["ok"] and result["failed"] == []
    rows = {row["canister_id"]: row for row in result["canisters"]}
    assert list(rows) == fleet_ids(fleet_sim)
    for cid, row in rows.items():
        assert row["subnet"] == fleet_sim.subnet_of(cid) and row["ok"]
        assert row["bytes_sent"] == model.stat().st_size and row["cycles_spent"] > 0
        assert [f["sha256"] for f in row["files"]] == [result["canisters"][0]["files"][0]["sha256"]]
        assert row["steps"] == ["load_model", "set_max_tokens", "ready"]
    assert Counter(row["subnet"] for row in rows.values()) == {
        fleet_sim.subnet_principal(0): 2,
        fleet_sim.subnet_principal(1): 2,
    }
    assert result["bytes_sent"] == 4 * model.stat().st_size
    progress = events[:-1]
    assert {e["event"] for e in progress} >= {"plan", "chunk", "step", "done", "finished"}
    for event in progress:
        assert event["canister"] in rows and event["subnet"] == rows[event["canister"]]["subnet"], event


def test_one_canister_out_of_cycles_and_one_trapping_on_load_fail_alone_and_the_retry_finishes_them(
    fleet_sim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    model = write_gguf(tmp_path / "m.gguf", 6 * LLAMA_CHUNK + 99)
    ok_a, dry, trapping, ok_b = fleet_ids(fleet_sim)
    fleet_sim.canister(dry).system.cycles = 13_000_000_000  # enough for a few chunks
    fleet_sim.faults.trap_on_call(trapping, "load_model", times=6)  # every retry meets it again
    code, events, stderr = run_prep(upload_args(fleet_sim, model, "--ignore-cycles"), prep_env)
    assert code == 1, stderr
    assert sorted(events[-2]["failed"]) == sorted([dry, trapping])  # the result, then the error event
    assert f"failed: {dry}: canister {dry} ran out of cycles during the upload" in stderr
    assert f"failed: {trapping}: load_model on {trapping} was rejected" in stderr
    rows = {row["canister_id"]: row for row in events[-2]["canisters"]}
    assert 0 < rows[dry]["bytes_sent"] < model.stat().st_size  # what it sent before its cycles ran out
    assert rows[trapping]["bytes_sent"] == model.stat().st_size
    for cid in (ok_a, ok_b, trapping):
        assert fleet_sim.canister(cid).file_bytes(REMOTE) == model.read_bytes()
    retry = shlex.split(stderr.split("retry just those: ")[1].splitlines()[0])
    assert retry[:2] == ["prep", "upload"]
    assert [retry[i + 1] for i, word in enumerate(retry) if word == "--canister"] == [dry, trapping]
    assert "--ignore-cycles" in retry and "--json" in retry

    fleet_sim.top_up(dry, 10**13)
    code, events, stderr = run_prep([sys.executable, "-m", "pipeline", *retry[1:]], prep_env)
    assert code == 0, stderr
    assert {row["canister_id"] for row in events[-1]["canisters"]} == {dry, trapping}
    assert_every_canister_holds(fleet_sim, model, 7)
    loads = Counter(
        u.canister for u in fleet_sim.updates if u.method == "load_model" and u.outcome == "replied"
    )
    assert loads == {ok_a: 1, ok_b: 1, dry: 1, trapping: 1}


def test_kill_9_mid_fleet_then_a_rerun_finishes_every_canister_without_executing_a_chunk_twice(
    tmp_path: Path, prep_env: dict[str, str]
) -> None:
    model = write_gguf(tmp_path / "m.gguf", 8 * LLAMA_CHUNK + 5)
    with IcSim(subnets=2, canisters_per_subnet=2, block_interval=0.05) as sim:
        args = upload_args(sim, model)
        proc = subprocess.Popen(args, env=prep_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        chunks = 0
        for line in proc.stdout:
            chunks += json.loads(line)["event"] == "chunk"
            if chunks == 12:  # of 36: every canister has begun, none is done
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert any(len(executed_offsets(sim, cid)) < 9 for cid in fleet_ids(sim))
        code, events, stderr = run_prep(args, prep_env)
        assert code == 0, stderr
        assert_every_canister_holds(sim, model, 9)
        assert events[-1]["bytes_sent"] < 4 * model.stat().st_size  # it resumed


def test_prep_run_with_a_fleet_file_builds_once_then_uploads_loads_and_smokes_each_and_smoke_asks_again(
    tiny_world: TinyWorld, fleet_sim: IcSim, tmp_path: Path
) -> None:
    recipe = tiny_world.recipes_dir / "smollm2-135m.toml"
    first, second, *rest = fleet_ids(fleet_sim)
    fleet_file = tmp_path / "FLEET.toml"
    fleet_file.write_text(
        f'network = "{fleet_sim.url}"\npem = "{fleet_sim.dev_identity_pem}"\nrecipe = "{recipe}"\n'
        + "".join(f'[[canister]]\nid = "{cid}"\n' for cid in (first, *rest))
        + f'[[canister]]\nid = "{second}"\n[canister.target]\nmax_tokens_update = 3\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--fleet", str(fleet_file), "--yes", "--json"],
        env=dict(os.environ), capture_output=True, text=True, timeout=300, cwd=PROJECT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    stages = [
        (e["stage"], e.get("canister")) for e in events if e["event"] == "stage" and e["status"] == "ran"
    ]
    assert [s for s, _ in stages].count("fetch") == 1 and [s for s, _ in stages].count("build") == 1
    assert Counter(s for s, _ in stages)["smoke"] == 4
    result = events[-1]
    assert result["ok"] and len(result["canisters"]) == 4
    built = result["canisters"][0]["files"][0]["sha256"]
    for row in result["canisters"]:
        assert row["answer"] and row["files"][0]["sha256"] == built
        assert hashlib.sha256(fleet_sim.canister(row["canister_id"]).file_bytes(REMOTE)).hexdigest() == built
    assert fleet_sim.canister(second).max_tokens["max_tokens_update"] == 3  # its own override
    assert fleet_sim.canister(first).max_tokens["max_tokens_update"] != 3
    smoked = subprocess.run(
        [sys.executable, "-m", "pipeline", "smoke", "--fleet", str(fleet_file), "--json"],
        env=dict(os.environ), capture_output=True, text=True, timeout=300, cwd=PROJECT,
    )  # fmt: skip
    assert smoked.returncode == 0, smoked.stderr
    answers = json.loads(smoked.stdout.splitlines()[-1])["canisters"]
    assert len(answers) == 4 and all(row["ok"] and row["answer"] for row in answers)


@pytest.mark.parametrize(
    ("fleet_text", "extra", "says"),
    [
        ("[[canister]]\nidd = 'x'\n", [], "`canister[0]` needs exactly one of `id`"),
        ("[[canister]]\nid = 'rrkah-fqaaa-aaaaa-aaaaq-cai'\npem = 3\n", [], "`canister[0].pem`"),
        ("[[canister]]\nname = 'llm_9'\n", [], "unknown canister 'llm_9'"),
        ("[[canister]]\nid = 'rrkah-fqaaa-aaaaa-aaaaq-cai'\n", ["--only", "other"], "--only other"),
        ("[[canister]]\nid = 'rrkah-fqaaa-aaaaa-aaaaq-cai'\n", ["--canister", "x"], "not both"),
        ("not = [toml\n", [], "not valid TOML"),
    ],
)
def test_hostile_fleet_files_are_refused_naming_the_file_and_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fleet_text: str, extra: list[str], says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREP_WORKDIR", str(tmp_path / "work"))
    fleet_file = tmp_path / "FLEET.toml"
    fleet_file.write_text(fleet_text)
    model = write_gguf(tmp_path / "m.gguf", 1000)
    done = prep_in_process(
        "upload", "--file", str(model), "--kind", "llama_cpp", "--network", "http://127.0.0.1:9",
        "--anonymous", "--fleet", str(fleet_file), *extra,
    )  # fmt: skip
    assert done.code == 2, done.stderr
    assert says in done.stderr and "hint: " in done.stderr and "Traceback" not in done.stderr
    if not extra and "unknown canister" not in says:  # the file's own errors name it
        assert str(fleet_file) in done.stderr


def test_only_needs_a_fleet_file(tmp_path: Path) -> None:
    done = prep_in_process("smoke", "--kind", "llama_cpp", "--prompt", "hi", "--canister", "a", "--only", "a")
    assert done.code == 2 and "--only picks canisters of a --fleet file" in done.stderr


def test_a_file_every_canister_refuses_is_bad_input_not_a_retry(
    fleet_sim: IcSim, tmp_path: Path, prep_env: dict[str, str]
) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all" * 1000)
    code, _, stderr = run_prep(upload_args(fleet_sim, junk), prep_env)
    assert code == 2, stderr
    assert "junk.gguf is not a GGUF model" in stderr and "retry just those" not in stderr
    assert not [u for u in fleet_sim.updates if u.method == "file_upload_chunk"]
