"""The journal never overrules the canister: what the canister reported when a run ended is compared by
the next run (and by --status); a difference re-checks the file and resends only what differs; --verify
forces a read-back; --restart discards the journal; a load step refused after trusting journals the
canister cannot show sends those files again."""

from __future__ import annotations

from pathlib import Path

from pipeline.targets.profile import load_profile
from pipeline.targets.session import TargetSession
from pipeline.upload.entry import upload_status
from tests.fixtures_upload import EngineRun, icsim_client, sha256
from tests.icsim import IcSim
from tests.test_upload import (
    assert_generates,
    assert_uploaded_and_loaded,
    chunk_count,
    kind_files,
    upload_calls,
)

MODEL = "models/model.gguf"


def write_last_byte_behind_preps_back(sim: IcSim, size: int, byte: bytes) -> None:
    """Another uploader (same controller) rewrites the file's last byte: same size, other content."""
    profile = load_profile("llama_cpp")
    cid = sim.canister_ids["llama_cpp"]
    with icsim_client(sim) as client:
        session = TargetSession(client, cid, profile)
        arg = session.args(profile.roles[0].upload, remote=MODEL, chunk=byte, chunk_size=1, offset=size - 1)
        client.call(cid, "file_upload_chunk", arg)


def uploaded(
    upload_run: EngineRun, kind: str, tmp_path: Path
) -> tuple[Path | str, list[tuple[str, Path, str]]]:
    """A kind's files, uploaded and loaded once (the journal then says complete)."""
    target, files = kind_files(kind, tmp_path)
    upload_run(target, files)
    return target, files


def status_row(
    sim: IcSim, workspace: Path, kind: str | Path, files: list[tuple[str, Path, str]], role: str
) -> dict:
    remotes = {name: remote for name, _, remote in files}
    profile = load_profile(kind)
    with icsim_client(sim) as client:
        rows = upload_status(client, profile, sim.canister_ids[profile.kind], workspace, remotes)
    return next(r for r in rows if r["role"] == role)


def test_one_byte_changed_in_the_canister_is_found_and_only_its_chunk_resent(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = kind_files("llama_cpp", tmp_path)
    model = files[0][1]
    upload_run(target, files)
    size = model.stat().st_size
    last = model.read_bytes()[-1:]
    write_last_byte_behind_preps_back(icsim, size, bytes([last[0] ^ 0xFF]))
    canister = icsim.canister("llama_cpp")
    assert len(canister.file_bytes(MODEL)) == size and canister.file_bytes(MODEL) != model.read_bytes()
    row = status_row(icsim, upload_run.workspace, target, files, "model")
    assert row["bytes_complete"] and row["canister_agrees"] is False
    upload_run.events.clear()
    report = upload_run(target, files)
    # read back, only the chunk that differs goes again (after one good chunk: the canister ignores a
    # chunk at the offset it wrote last, see offset_upload._nudge)
    assert report.chunks_sent == 2
    (resume,) = upload_run.named("resume")
    assert resume["action"] == "reverify" and resume["cause"] == "canister_disagrees"
    assert sha256(canister.file_bytes(MODEL)) == sha256(model.read_bytes())
    assert status_row(icsim, upload_run.workspace, target, files, "model")["canister_agrees"] is True


def test_verify_reads_back_what_no_query_shows(upload_run: EngineRun, icsim: IcSim, tmp_path: Path) -> None:
    """A byte flipped in stable memory changes nothing the canister reports: a rerun trusts it, and
    --verify reads the file back and resends the damaged chunk."""
    target, files = kind_files("llama_cpp", tmp_path)
    model = files[0][1]
    upload_run(target, files)
    path = icsim.canister("llama_cpp").file_path(MODEL)  # type: ignore[attr-defined]
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # in the last chunk (chunk 0 would mean everything: it truncates)
    path.write_bytes(bytes(data))
    assert upload_run(target, files).chunks_sent == 0
    upload_run.events.clear()
    report = upload_run(target, files, verify=True)
    assert report.chunks_sent == 2  # the damaged chunk, after one good one (see above)
    assert upload_run.named("resume")[0]["cause"] == "verify_requested"
    assert sha256(icsim.canister("llama_cpp").file_bytes(MODEL)) == sha256(model.read_bytes())


def test_gpt2_a_buffer_changed_behind_the_journal_is_rechecked(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    target, files = uploaded(upload_run, "gpt2", tmp_path)
    canister = icsim.canister("gpt2")
    canister.buffers["tokenizer"] = bytearray(b"{}")  # type: ignore[attr-defined]
    canister.buffers["config"] = bytearray(b"{")  # type: ignore[attr-defined]
    row = status_row(icsim, upload_run.workspace, target, files, "tokenizer")
    assert row["canister_agrees"] is False, row
    before = dict(canister.counters.calls)
    upload_run.events.clear()
    upload_run(target, files)
    actions = {e["role"]: (e["action"], e["cause"]) for e in upload_run.named("resume")}
    assert actions["tokenizer"] == ("restore", "canister_disagrees")  # kept in stable memory: loaded back
    assert actions["config"] == ("restart", "canister_disagrees")  # heap only: sent again
    sent = {m: canister.counters.calls[m] - before.get(m, 0) for m in ("append_tokenizer_bytes",)}
    assert sent["append_tokenizer_bytes"] == 0
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert_generates(icsim)
    upload_run.events.clear()
    assert upload_run(target, files).chunks_sent == 0 and not upload_run.named("resume")


def test_icpp_llama2_a_refused_load_after_a_trusted_journal_sends_the_files_again(
    upload_run: EngineRun, icsim: IcSim, tmp_path: Path
) -> None:
    """icpp_llama2 cannot report its bytes: when its model is gone (reset by someone else), the journal
    still says complete; the refused load step makes prep send the files again, once, and say why."""
    target, files = uploaded(upload_run, "icpp_llama2", tmp_path)
    cid = icsim.canister_ids["icpp_llama2"]
    with icsim_client(icsim) as client:
        client.call(cid, "reset_model", b"DIDL\x00\x00")
    before = upload_calls(icsim, "icpp_llama2")
    upload_run.events.clear()
    upload_run(target, files)
    restarts = [e for e in upload_run.named("resume") if e["action"] == "restart"]
    assert {e["role"] for e in restarts} == {"model", "tokenizer"}
    assert all(e["cause"] == "step_refused" for e in restarts)
    assert upload_calls(icsim, "icpp_llama2") - before == chunk_count(target, files)
    assert_uploaded_and_loaded(icsim, "icpp_llama2", files)


def test_restart_discards_the_journal(upload_run: EngineRun, icsim: IcSim, tmp_path: Path) -> None:
    target, files = uploaded(upload_run, "gpt2", tmp_path)
    upload_run.events.clear()
    report = upload_run(target, files, restart=True)
    assert report.chunks_sent == chunk_count(target, files)
    assert {e["cause"] for e in upload_run.named("resume")} == {"restart_requested"}
    received = sum(icsim.canister("gpt2").counters.bytes_in.values())
    assert received == 2 * sum(path.stat().st_size for _, path, _ in files)  # reset, then sent once more
    assert_uploaded_and_loaded(icsim, "gpt2", files)
    assert_generates(icsim)
