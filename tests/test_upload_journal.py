"""Chunk planning and the journal file: what a restarted process reads back."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.upload.journal import FileRecord, InFlight, Journal, journal_path
from pipeline.upload.plan import (
    BLOCK_INGRESS_BYTES,
    ENVELOPE_OVERHEAD_BYTES,
    Chunk,
    chunk_size_for,
    estimated_cycles,
    plan_chunks,
)


def record(**changes: object) -> FileRecord:
    fields = dict(
        network_url="http://127.0.0.1:4943", canister_id="rrkah-fqaaa-aaaaa-aaaaq-cai", kind="llama_cpp",
        role="model", remote="models/model.gguf", local_sha256="ab" * 32, size=10, chunk_size=4,
        module_hash="cd" * 32,
    )  # fmt: skip
    fields.update(changes)
    return FileRecord(**fields)  # type: ignore[arg-type]


def test_plan_covers_the_file_with_chunks_no_larger_than_the_max() -> None:
    assert plan_chunks(10, 4) == [Chunk(0, 0, 4), Chunk(1, 4, 4), Chunk(2, 8, 2)]
    assert plan_chunks(8, 4) == [Chunk(0, 0, 4), Chunk(1, 4, 4)]
    assert plan_chunks(0, 4) == [Chunk(0, 0, 0)]
    assert estimated_cycles(500_000_000, 264) == 264 * 1_200_000 + 500_000_000 * 2_000


def test_journal_path_separates_network_canister_and_remote(tmp_path: Path) -> None:
    path = journal_path(tmp_path, "https://icp-api.io", "aaaaa-aa", "models/model.gguf")
    assert path == tmp_path / ".journal" / "icp-api.io" / "aaaaa-aa" / "models%2Fmodel.gguf.json"


def test_journal_round_trips_done_ranges_and_in_flight_envelopes(tmp_path: Path) -> None:
    path = tmp_path / "j" / "x.json"
    journal = Journal(path)
    assert journal.record is None
    journal.start(record())
    entry = InFlight("00ff", "file_upload_chunk", 123, chunk=2, offset=8, length=2)
    journal.add_inflight(entry, b"envelope-bytes")
    journal.update(FileRecord.keep_chunks, {0, 1, 3, 4, 5, 9})

    again = Journal(path)
    assert again.record is not None
    assert again.record.done == [[0, 2], [3, 6], [9, 10]]
    assert again.record.inflight == {"00ff": entry}
    assert again.envelope("00ff") == b"envelope-bytes"

    again.settle("00ff", change=lambda r: r.keep_chunks(r.done_chunks() | {2}))
    final = Journal(path).record
    assert final is not None and final.inflight == {} and final.done == [[0, 6], [9, 10]]
    assert again.envelope("00ff") is None
    assert not list(path.parent.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_a_fresh_start_drops_stale_envelopes_and_a_newer_version_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    journal = Journal(path)
    journal.start(record())
    journal.add_inflight(InFlight("aa", "m", 1), b"old")
    journal.start(record(size=20))
    assert journal.envelope("aa") is None and journal.record is not None and journal.record.inflight == {}
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "version": 99}))
    assert Journal(path).record is None


def test_concurrent_updates_are_all_saved(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    journal = Journal(path)
    journal.start(record(size=400))

    def ack(index: int) -> None:
        journal.add_inflight(InFlight(f"{index:04x}", "m", 1, chunk=index), b"e", sync_envelope=False)
        journal.settle(f"{index:04x}", change=lambda r: r.keep_chunks(r.done_chunks() | {index}))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(ack, range(100)))
    saved = Journal(path).record
    assert saved is not None and saved.done == [[0, 100]] and saved.inflight == {}


def test_concurrent_chunks_tile_a_block_and_its_half() -> None:
    # Two 1.9 MB messages leave a tenth of every block empty; four smaller ones fill it, and two of them
    # fill the half of a block that other users' messages leave.
    message = chunk_size_for(1_900_000, concurrent=True) + ENVELOPE_OVERHEAD_BYTES
    assert (BLOCK_INGRESS_BYTES // message, BLOCK_INGRESS_BYTES // 2 // message) == (4, 2)
    for max_chunk in (1_900_000, 1_000_000, 65_536):
        chunk = chunk_size_for(max_chunk, concurrent=True)
        message = chunk + ENVELOPE_OVERHEAD_BYTES
        assert chunk <= max_chunk
        for room in (BLOCK_INGRESS_BYTES, BLOCK_INGRESS_BYTES // 2):
            assert room % message < message // 100  # a whole number of messages fills the room
    assert chunk_size_for(1_900_000, concurrent=False) == 1_900_000  # one at a time: fewest round trips
