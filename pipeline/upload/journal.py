"""The upload journal: what a restarted `prep upload` needs to continue without duplicating a byte.

One journal per (network, canister, remote file), under the workspace:
  <workspace>/.journal/<network host>/<canister id>/<remote name, slashes as %2F>.json
with the signed envelopes of in-flight calls next to it in `<same name>.inflight/<request id>.cbor`.
The JSON holds the network URL, canister id, module hash, remote name, local sha256 and size, chunk size,
the chunks acknowledged (as index ranges) or the bytes acknowledged (append kinds), how far the steps
after the bytes got, and the in-flight request ids. Every change is written to a temporary file,
fsync'd and renamed over the old one; an envelope is fsync'd before it is first submitted, so a
process killed at any point (kill -9, a reboot) leaves a journal that tells what may have executed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pipeline.atomic import write_atomic

JOURNAL_VERSION = 1


@dataclass
class InFlight:
    """A signed call that was (or may have been) submitted and whose outcome is not yet recorded."""

    request_id: str  # hex
    method: str
    expiry_ns: int
    chunk: int | None = None  # chunk index (offset kinds) or None
    offset: int = 0
    length: int = 0


@dataclass
class FileRecord:
    network_url: str
    canister_id: str
    kind: str
    role: str
    remote: str
    local_sha256: str
    size: int
    chunk_size: int
    module_hash: str | None
    done: list[list[int]] = field(default_factory=list)  # acknowledged chunk index ranges [start, end)
    acked_bytes: int = 0  # append kinds: bytes the canister has acknowledged, in order
    bytes_complete: bool = False  # every byte is in and verified
    steps_done: int = 0  # the role's after-steps completed, in order
    loaded: str | None = None  # key of the load steps that ran after all roles were complete
    inflight: dict[str, InFlight] = field(default_factory=dict)
    version: int = JOURNAL_VERSION

    # What the canister reported about the file when the run that completed it ended (sizes,
    # lengths, its own sha256): a rerun that sees something else does not trust the journal.
    canister_view: Any = None
    # Where the bytes came from, for `prep status`: the recipe's name and the release bundle's folder
    # (None: not named by the upload, e.g. `prep upload --file`, or a journal written before they were kept).
    recipe: str | None = None
    bundle: str | None = None

    def done_chunks(self) -> set[int]:
        return {i for start, end in self.done for i in range(start, end)}

    # ---- transitions (each a `Journal.update` change) -------------------------------------------

    def keep_chunks(self, chunks: set[int]) -> None:
        """Only `chunks` count as acknowledged (the rest are sent again)."""
        self.done = _ranges(sorted(chunks))

    def forget_chunks(self, chunks: set[int]) -> None:
        self.keep_chunks(self.done_chunks() - chunks)

    def mark_chunk_done(self, entry: InFlight, appended: bool) -> None:
        """A chunk's call executed; `appended`: it extended the file in order (append kinds)."""
        assert entry.chunk is not None
        self.keep_chunks(self.done_chunks() | {entry.chunk})
        if appended and entry.offset == self.acked_bytes:
            self.acked_bytes += entry.length

    def reset_acked(self) -> None:
        """The canister's copy was reset (append kinds): nothing of it is acknowledged."""
        self.acked_bytes = 0

    def mark_bytes_complete(self) -> None:
        self.bytes_complete = True

    def reset_bytes(self) -> None:
        """Every byte must be sent again (the canister's copy cannot be trusted)."""
        self.bytes_complete = False
        self.keep_chunks(set())

    def send_again(self) -> None:
        """The next run sends the file from its first byte and reruns its steps."""
        self.bytes_complete = False
        self.acked_bytes = 0
        self.steps_done = 0
        self.loaded = None
        self.canister_view = None

    def mark_rewritten(self) -> None:
        """Bytes were sent again after the file was loaded: the load steps must run again."""
        self.loaded = None
        self.canister_view = None

    def mark_step_done(self) -> None:
        self.steps_done += 1

    def rewind_steps(self, to: int) -> None:
        """Rerun the role's steps from `after[to]` on (they restore the bytes); the load steps too."""
        self.steps_done = to
        self.loaded = None

    def adopt_code(self, module_hash: str | None) -> None:
        """The file is in the canister as this code holds it (after a restore under new code)."""
        self.module_hash = module_hash

    def mark_loaded(self, key: str) -> None:
        self.loaded = key

    def record_view(self, view: Any) -> None:
        self.canister_view = view

    def record_origin(self, recipe: str | None, bundle: str | None) -> None:
        self.recipe, self.bundle = recipe, bundle

    def add_inflight(self, entry: InFlight) -> None:
        self.inflight[entry.request_id] = entry

    def settle_inflight(
        self, request_id: str, change: Callable[..., None] | None, args: tuple[Any, ...]
    ) -> None:
        self.inflight.pop(request_id, None)
        if change is not None:
            change(self, *args)

    def view_differs(self, now: Any) -> bool:
        """Whether the canister reports something else than when the run that completed the file ended."""
        return self.canister_view is not None and now != self.canister_view

    def same_upload(self, other: FileRecord) -> bool:
        """Whether this record describes the same bytes going to the same place in the same way."""
        keys = ("network_url", "canister_id", "kind", "role", "remote", "local_sha256", "size", "chunk_size")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def journal_path(root: Path, network_url: str, canister_id: str, remote: str) -> Path:
    host = urlsplit(network_url).netloc or network_url
    return root / ".journal" / quote(host, safe="") / canister_id / (quote(remote, safe="") + ".json")


class Journal:
    """One file's journal; thread-safe (chunks are acknowledged from many threads)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.envelopes = path.with_name(path.stem + ".inflight")
        self._lock = threading.Lock()  # guards the record and the change counters
        self._save_lock = threading.Lock()  # one writer at a time; waiting writers share its fsync
        self._changes = 0
        self._saved = 0
        self.record: FileRecord | None = self._load()

    def _load(self) -> FileRecord | None:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if data.get("version") != JOURNAL_VERSION:
            return None
        inflight = {k: InFlight(**v) for k, v in data.pop("inflight", {}).items()}
        return FileRecord(**data, inflight=inflight)

    def start(self, record: FileRecord) -> None:
        """Begins a fresh record for this file; envelopes of an older record are dropped."""
        for stale in self.envelopes.glob("*.cbor") if self.envelopes.is_dir() else ():
            stale.unlink()
        self.update(None, replace=record)

    def update(
        self, change: Callable[..., None] | None, *args: Any, replace: FileRecord | None = None
    ) -> None:
        """Applies `change(record, *args)` (a FileRecord transition) and returns once a durable save
        includes it.

        Saves are group commits: while one thread writes and fsyncs, the changes of others pile up and
        the next write carries them all, so a window of concurrent chunks costs a few fsyncs, not one each.
        """
        with self._lock:
            if replace is not None:
                self.record = replace
            assert self.record is not None
            if change is not None:
                change(self.record, *args)
            self._changes += 1
            mine = self._changes
        with self._save_lock:
            if self._saved >= mine:
                return
            with self._lock:
                assert self.record is not None
                data = _to_json(self.record)
                covered = self._changes
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, data)
            self._saved = covered

    def add_inflight(self, entry: InFlight, envelope: bytes, *, sync_envelope: bool = True) -> None:
        """Records a signed call before its first submission, envelope included.

        Without `sync_envelope` the envelope reaches the page cache (it survives kill -9) but is not
        flushed to disk: for calls whose repetition is harmless, losing it in a power cut costs a resend.
        """
        self.envelopes.mkdir(parents=True, exist_ok=True)
        write_atomic(self.envelopes / f"{entry.request_id}.cbor", envelope, sync=sync_envelope)
        self.update(FileRecord.add_inflight, entry)

    def envelope(self, request_id: str) -> bytes | None:
        try:
            return (self.envelopes / f"{request_id}.cbor").read_bytes()
        except FileNotFoundError:
            return None

    def settle(self, request_id: str, change: Callable[..., None] | None = None, *args: Any) -> None:
        """Removes a call from the in-flight set, applying the transition `change(record, *args)` (e.g.
        mark its chunk done) in the same save."""
        self.update(FileRecord.settle_inflight, request_id, change, args)
        (self.envelopes / f"{request_id}.cbor").unlink(missing_ok=True)


def _to_json(record: FileRecord) -> bytes:
    """The record as JSON: one flat copy, no `asdict` deep copy, and no indent, which would force json's
    pure-Python encoder (two saves per chunk, each under the lock that acknowledging threads wait on)."""
    data = {**vars(record), "inflight": {k: vars(v) for k, v in record.inflight.items()}}
    return json.dumps(data, sort_keys=True).encode()


def _ranges(sorted_items: list[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for item in sorted_items:
        if ranges and ranges[-1][1] == item:
            ranges[-1][1] = item + 1
        else:
            ranges.append([item, item + 1])
    return ranges
