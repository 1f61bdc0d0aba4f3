"""Offset addressing (llama_cpp): chunk 0 alone, then a window of concurrent chunks; proof by read-back.

Chunk 0 truncates the remote file, so it lands before any other. The rest go concurrently so several
land in each block; completeness is proven by reading the file back range by range and resending what
differs. With `strict_order` chunks go one at a time, in order, so the canister's own running sha256
matches too (and is checked).
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, ClassVar

from pipeline.errors import PrepError
from pipeline.targets.offset import OffsetFile
from pipeline.targets.profile import RoleProfile
from pipeline.targets.remote_file import RemoteFile
from pipeline.targets.session import TargetSession
from pipeline.upload.flow import Slot
from pipeline.upload.journal import FileRecord, Journal
from pipeline.upload.plan import Chunk, LocalFile, plan_chunks
from pipeline.upload.reasons import Restart, Why
from pipeline.upload.sender import Sender

VERIFY_ROUNDS = 3


@dataclass
class OffsetMode:
    """Offset addressing: chunks say where they go; chunk 0 truncates; proof by reading back."""

    name: ClassVar[str] = "offset"
    remote_names_role: ClassVar[bool] = False
    window: int = 1
    strict_order: bool = False

    @property
    def concurrent(self) -> bool:
        return not self.strict_order and self.window > 1

    def driver(self, session: TargetSession, role: RoleProfile, remote: str) -> OffsetFile:
        return OffsetFile(session, role, remote)

    def view(self, driver: RemoteFile) -> Any:
        assert isinstance(driver, OffsetFile)
        return {"size": driver.remote_size(), "details": driver.details()}

    def contradiction(self, driver: RemoteFile, record: FileRecord, *, verify: bool) -> Restart | None:
        """A complete journal is doubted when the canister holds another size (the file was removed or
        rewritten behind prep's back), reports other file details than at the end of the last run (a
        chunk written by someone else), or, with --strict-order, another running sha256."""
        assert isinstance(driver, OffsetFile)
        if not record.bytes_complete:
            return None
        if verify:
            return Restart(Why.VERIFY_REQUESTED)
        now = self.view(driver)
        if now["size"] != record.size:
            held = f"{now['size'] or 0:,} of {record.size:,} bytes"
            return Restart(Why.CANISTER_DISAGREES, f"the journal says complete, the canister holds {held}")
        if record.view_differs(now):
            return Restart(
                Why.CANISTER_DISAGREES,
                f"its record of the file changed since the last run ({_short(record.canister_view)} "
                f"then, {_short(now)} now)",
            )
        if self.strict_order and not self.running_sha_matches(driver, record):
            return Restart(Why.SHA_DIFFERS)
        return None

    def reverifies(self, restart: Restart) -> bool:
        # The file lives in stable memory and survives upgrades and other writers: read it back and
        # resend only what differs instead of everything.
        return not restart.why.keeps_nothing

    def status_row(self, driver: RemoteFile, record: FileRecord | None) -> dict[str, Any]:
        view = self.view(driver)
        row: dict[str, Any] = {"addressing": self.name, "canister_bytes": view["size"], "canister_view": view}
        if record is not None:
            chunks = plan_chunks(record.size, record.chunk_size)
            done = sum(chunks[i].length for i in record.done_chunks() if i < len(chunks))
            row.update(
                chunks_done=len(record.done_chunks()), chunks_total=len(chunks), acknowledged_bytes=done
            )
        return row

    def send(
        self,
        sender: Sender,
        journal: Journal,
        driver: RemoteFile,
        local: LocalFile,
        *,
        resumed: bool,
        reverify: bool,
    ) -> None:
        assert isinstance(driver, OffsetFile)
        progress = sender.progress
        record = journal.record
        assert record is not None
        chunks = plan_chunks(record.size, record.chunk_size)
        done = record.done_chunks()
        if resumed and done:
            done = self._resume_point(driver, chunks, done)
            progress.event(
                "resume", role=record.role, action="continue", chunks_done=len(done), chunks=len(chunks)
            )
        journal.update(FileRecord.keep_chunks, done)
        already = sum(chunks[i].length for i in done)
        progress.begin_file(f"{record.role} → {record.remote}", record.size, already)
        try:
            todo = [c for c in chunks if c.index not in done]
            if reverify:
                todo = self._verify(driver, local, chunks)
                todo = chunks if any(c.index == 0 for c in todo) else todo
                kept = {c.index for c in chunks} - {c.index for c in todo}
                journal.update(FileRecord.keep_chunks, kept)
                if todo:
                    journal.update(FileRecord.mark_rewritten)
                progress.event("verify", role=record.role, ok=not todo, bad_chunks=[c.index for c in todo])
            if todo or not reverify or self.strict_order:
                self._send_until_verified(sender, journal, driver, local, chunks, todo, read_back=reverify)
        finally:
            progress.end_file()
        progress.event("verify", role=record.role, ok=True, sha256=record.local_sha256, bytes=record.size)
        journal.update(FileRecord.mark_bytes_complete)

    def _send_until_verified(
        self,
        sender: Sender,
        journal: Journal,
        driver: OffsetFile,
        local: LocalFile,
        chunks: list[Chunk],
        todo: list[Chunk],
        *,
        read_back: bool,
    ) -> None:
        """Sends `todo`, reads the whole file back, and resends what differs, a few rounds at most.
        `read_back`: `todo` is what a read-back found different (not what the journal lacks)."""
        record = journal.record
        assert record is not None
        for _round in range(VERIFY_ROUNDS):
            nudge = _nudge(chunks, todo) if read_back else None
            self._send_chunks(sender, journal, driver, local, todo, nudge)
            read_back = True
            bad = self._verify(driver, local, chunks)
            if not bad and self.strict_order and not self.running_sha_matches(driver, record):
                bad = chunks  # the canister's running hash restarts only at offset 0: resend in order
            if not bad:
                break
            sender.progress.event(
                "verify", role=record.role, ok=False, bad_chunks=sorted(c.index for c in bad)
            )
            todo = chunks if any(c.index == 0 for c in bad) else bad
            resend = {c.index for c in todo}
            journal.update(FileRecord.forget_chunks, resend)
        else:
            raise PrepError(
                f"{record.remote} on canister {record.canister_id} still differs from {local.path} "
                f"after {VERIFY_ROUNDS} rounds of re-sending",
                hint="something else is writing this file; stop it and run prep upload again",
            )

    def _resume_point(self, driver: OffsetFile, chunks: list[Chunk], done: set[int]) -> set[int]:
        """Keeps the journal's done chunks only when the canister's file can hold them."""
        if 0 not in done:
            return set()  # chunk 0 truncates the file: nothing sent before it counts
        remote_size = driver.remote_size()
        highest = max(chunks[i].end for i in done)
        if remote_size is None or remote_size < highest:
            return set()
        return done

    def _send_chunks(
        self,
        sender: Sender,
        journal: Journal,
        driver: OffsetFile,
        local: LocalFile,
        todo: list[Chunk],
        nudge: Chunk | None = None,
    ) -> None:
        if not todo:
            return
        if nudge is not None:
            sender.send_chunk(journal, driver, local, nudge)
        if todo[0].index == 0 or self.strict_order:
            first, rest = todo[0], todo[1:]
            sender.send_chunk(journal, driver, local, first)
            if self.strict_order:
                for chunk in rest:
                    sender.send_chunk(journal, driver, local, chunk)
                return
        else:
            rest = todo
        self._send_concurrently(sender, journal, driver, local, rest)

    def _send_concurrently(
        self, sender: Sender, journal: Journal, driver: OffsetFile, local: LocalFile, chunks: list[Chunk]
    ) -> None:
        """Each chunk is submitted once the flow grants it a slot, so threads follow the window."""
        failed = threading.Event()
        futures: list[Future[None]] = []
        flow = sender.flow

        def finished(future: Future[None], slot: Slot) -> None:
            if future.cancelled():
                flow.release(slot)  # never started: send_chunk did not get to release it
            elif future.exception() is not None:
                failed.set()

        pool = ThreadPoolExecutor(max_workers=flow.limit, thread_name_prefix="upload")
        try:
            for chunk in chunks:
                slot = flow.acquire(chunk.length)
                if failed.is_set():
                    flow.release(slot)
                    break
                future = pool.submit(sender.send_chunk, journal, driver, local, chunk, slot)
                future.add_done_callback(lambda f, s=slot: finished(f, s))
                futures.append(future)
            wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in futures if f.done() and f.exception() is not None]
            if errors:
                raise errors[0]  # type: ignore[misc]
        finally:
            # On a failure or Ctrl-C, chunks not yet started stay unsent; those in flight finish and are
            # journaled, so the next run knows exactly what landed.
            pool.shutdown(wait=True, cancel_futures=True)

    def _verify(self, driver: OffsetFile, local: LocalFile, chunks: list[Chunk]) -> list[Chunk]:
        """Reads the file back range by range (concurrent queries); returns the chunks that differ."""
        remote_size = driver.remote_size()
        if remote_size is not None and remote_size > local.size:
            return chunks  # a longer stale file: only a restart from chunk 0 truncates it

        readable = [c for c in chunks if remote_size is not None and c.end <= remote_size]
        remote = driver.read_ranges([(c.offset, c.length) for c in readable], self.window)
        same = {
            c.offset
            for c, data in zip(readable, remote, strict=True)
            if len(data) == c.length and local.holds(c.offset, data)
        }
        return [c for c in chunks if c.offset not in same]

    def running_sha_matches(self, driver: OffsetFile, record: FileRecord) -> bool:
        try:
            reported = driver.running_sha()
        except PrepError:  # no upload details (e.g. lost in an upgrade): the hash cannot match
            return False
        return reported is None or reported.lower() == record.local_sha256


def _nudge(chunks: list[Chunk], todo: list[Chunk]) -> Chunk | None:
    """A chunk to rewrite (with the bytes it already holds) before resending `todo` found by a read-back.

    The canister ignores a chunk at the offset of the one it wrote last (an "immediate repeat"), and
    the last one written may be the very chunk that now differs (someone else wrote it): writing another
    chunk first makes the resend count. The shortest good chunk other than chunk 0, which truncates.
    """
    if any(c.index == 0 for c in todo):
        return None
    resent = {c.index for c in todo}
    good = [c for c in chunks if c.index != 0 and c.index not in resent]
    return min(good, key=lambda c: c.length) if good else None


def _short(view: Any, limit: int = 160) -> str:
    text = repr(view)
    return text if len(text) <= limit else text[: limit - 3] + "..."
