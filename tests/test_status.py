"""`prep status` against a two-subnet icsim: a fleet that agrees exits 0; each kind of drift is flagged
(another model file, not loaded, low cycles, other code, unreachable) and exits 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.app import main
from pipeline.targets.profile import load_profile
from pipeline.upload.engine import UploadEngine
from pipeline.upload.journal import Journal
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import UploadFile, UploadRequest
from tests.fixtures_upload import icsim_client, sha256, write_gguf
from tests.icsim import IcSim

REMOTE = "models/model.gguf"
MODEL_BYTES = 300_000


@dataclass
class Fleet:
    sim: IcSim
    ids: list[str]  # the llama_cpp canisters: two on subnet 0, two on subnet 1
    work: Path
    model: Path
    other: Path

    def upload(self, canister: str, path: Path, *, load: bool = True, bundle: str | None = None) -> None:
        request = UploadRequest(
            profile=load_profile("llama_cpp"),
            canister_id=canister,
            files=(UploadFile("model", path, REMOTE, recipe="tiny-llama", bundle=bundle),),
            workspace_root=self.work,
            run_steps=load,
        )
        with icsim_client(self.sim) as client:
            UploadEngine(client, request, UploadProgress(lambda _event: None, bar=False)).run()

    def status(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
        """`prep status --json` as the dev identity (a controller): exit code, the document, stderr."""
        code, out, err = self.status_text(capsys, *args, "--json")
        return code, json.loads(out), err

    def status_text(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        argv = ["status", "--network", self.sim.url, *args]
        if "--anonymous" not in args:
            argv += ["--pem", str(self.sim.dev_identity_pem)]
        try:
            main(argv)
            code = 0
        except SystemExit as done:
            code = int(done.code or 0)
        out, err = capsys.readouterr()
        return code, out, err


def canister_args(ids: list[str]) -> list[str]:
    return [arg for cid in ids for arg in ("--canister", cid)]


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.setenv("PREP_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("DFX_CONFIG_ROOT", str(tmp_path / "no-dfx"))
    monkeypatch.delenv("PREP_PEM", raising=False)
    monkeypatch.chdir(tmp_path)
    model = write_gguf(tmp_path / "model.gguf", MODEL_BYTES)
    other = write_gguf(tmp_path / "other.gguf", MODEL_BYTES, seed=7)
    with IcSim(subnets=2, canisters_per_subnet=2) as sim:
        ids = [h.principal for h in sim.hosted if h.kind == "llama_cpp"]
        made = Fleet(sim, ids, tmp_path / "work", model, other)
        for cid in ids:
            made.upload(cid, model, bundle="dist/tiny-llama")
        yield made


def test_a_fleet_uploaded_alike_agrees_and_read_back_confirms_the_journal(capsys, fleet: Fleet) -> None:
    code, doc, err = fleet.status(capsys, *canister_args(fleet.ids))
    assert code == 0, err
    assert doc["exit_code"] == 0 and doc["drift"] == [] and "exit_codes" in doc
    rows = doc["canisters"]
    assert [r["canister_id"] for r in rows] == fleet.ids
    assert len({r["subnet"] for r in rows}) == 2
    model_sha = sha256(fleet.model.read_bytes())
    for row in rows:
        assert row["kind"] == "llama_cpp" and row["ready"] is True and row["controller"] is True
        assert row["cycles"] > row["min_cycles"] > row["freezing_reserve"] > 0
        assert row["memory_size"] > MODEL_BYTES and row["wasm_memory_limit"] > 0
        (file,) = row["files"]
        assert (file["remote"], file["size"], file["sha256"]) == (REMOTE, MODEL_BYTES, model_sha)
        assert file["sha256_from"] == "journal" and file["recipe"] == "tiny-llama"
        assert file["bundle"] == "dist/tiny-llama"
    assert doc["majority"] == {
        "kind": "llama_cpp",
        "module_hash": rows[0]["module_hash"],
        "model.size": MODEL_BYTES,
        "model.sha256": model_sha,
    }
    code, doc, err = fleet.status(capsys, *canister_args(fleet.ids), "--read-back")
    assert code == 0, err
    assert {(f["sha256"], f["sha256_from"]) for r in doc["canisters"] for f in r["files"]} == {
        (model_sha, "read back")
    }
    code, text, _ = fleet.status_text(capsys, *canister_args(fleet.ids))
    assert code == 0 and "no drift: 4 canisters well" in text and "(journal) from tiny-llama" in text


def test_another_model_file_in_one_canister_is_flagged(capsys, fleet: Fleet) -> None:
    odd = fleet.ids[3]
    fleet.upload(odd, fleet.other)
    code, doc, _ = fleet.status(capsys, *canister_args(fleet.ids))
    assert code == 1 and doc["exit_code"] == 1
    assert [d["canister"] for d in doc["drift"]] == [odd]
    assert doc["drift"][0]["reason"].startswith("model sha256 differs")
    code, text, _ = fleet.status_text(capsys, *canister_args(fleet.ids))
    marked = [line for line in text.splitlines() if line.startswith("!")]
    assert code == 1 and len(marked) == 1 and odd in marked[0]
    assert f"{odd}: model sha256 differs" in text
    # Two canisters, one file each: a tie, so there is no majority to side with.
    code, doc, _ = fleet.status(capsys, *canister_args(fleet.ids[2:]))
    assert code == 1 and doc["majority"]["model.sha256"] == "no majority"
    assert [(d["canister"], d["reason"].split(":")[0]) for d in doc["drift"]] == [("fleet", "model sha256")]


def test_not_loaded_low_cycles_other_code_and_unreachable_are_flagged(
    capsys, fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREP_NETWORK_TIMEOUT", "2")  # the unreachable member is given up on after 2 s
    well, unloaded, poor, upgraded = fleet.ids
    fleet.upload(unloaded, fleet.other)
    fleet.upload(unloaded, fleet.model, load=False)  # the model file again, but the other one stays loaded
    fleet.sim.canister(poor).system.cycles = 10**9
    fleet.sim.upgrade(upgraded)
    fleet_file = tmp_path / "FLEET.toml"
    members = "".join(f'[[canister]]\nid = "{cid}"\n' for cid in fleet.ids)
    gone = f'[[canister]]\nid = "{well}"\nnetwork = "http://127.0.0.1:9"\n'
    fleet_file.write_text(members + gone)
    code, doc, _ = fleet.status(capsys, "--fleet", str(fleet_file))
    assert code == 1
    reasons: dict[str, list[str]] = {}
    for drift in doc["drift"]:
        reasons.setdefault(drift["canister"], []).append(drift["reason"])
    assert well not in reasons and f"{well}@{fleet.sim.url}" not in reasons  # listed twice: named by network
    assert any("not loaded since it went in" in r for r in reasons[unloaded]), reasons[unloaded]
    assert [r.split(":")[0] for r in reasons[poor]] == ["low cycles"]
    assert any(r.startswith("module hash differs") for r in reasons[upgraded])
    assert any(r.startswith("not loaded/ready") for r in reasons[upgraded])
    (unreachable,) = reasons[f"{well}@http://127.0.0.1:9"]
    assert unreachable.startswith("unreachable: ") and "127.0.0.1:9" in unreachable
    gone_row = doc["canisters"][-1]
    assert gone_row["error"] and gone_row["network_url"] == "http://127.0.0.1:9"
    upgraded_file = doc["canisters"][3]["files"][0]
    assert upgraded_file["sha256_from"] == "unknown" and "code changed" in str(upgraded_file["unproven"])
    # Reading every byte back proves the upgraded canister still holds the fleet's file.
    code, doc, _ = fleet.status(capsys, "--canister", upgraded, "--read-back")
    assert doc["canisters"][0]["files"][0]["sha256"] == sha256(fleet.model.read_bytes())


def test_a_fleet_of_one_has_only_the_absolute_checks(capsys, fleet: Fleet) -> None:
    code, doc, _ = fleet.status(capsys, "--canister", fleet.ids[0])
    assert code == 0 and doc["majority"] == {} and doc["drift"] == []
    code, doc, _ = fleet.status(capsys, "--canister", fleet.ids[0], "--min-cycles", "1000T")
    assert code == 1 and doc["drift"][0]["reason"].startswith("low cycles: ")
    code, text, _ = fleet.status_text(capsys, "--canister", fleet.ids[0], "--anonymous")
    assert code == 1 and "not a controller" in text and "models/model.gguf not readable" in text


def test_a_journal_written_before_recipes_were_kept_still_loads(fleet: Fleet) -> None:
    (path,) = (fleet.work / ".journal").rglob(f"{fleet.ids[0]}/*.json")
    data = json.loads(path.read_text())
    assert (data.pop("recipe"), data.pop("bundle")) == ("tiny-llama", "dist/tiny-llama")
    path.write_text(json.dumps(data))
    record = Journal(path).record
    assert record is not None and (record.recipe, record.bundle) == (None, None)
