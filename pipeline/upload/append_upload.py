"""Append addressing (gpt2, icpp_llama2): strictly sequential, resumed from the length query.

Where the kind has a length query, the upload continues from the bytes the canister holds when they
match the journal; otherwise (or when they do not match) the file is reset and sent again. Nothing can
be read back: a complete file is re-checked by its length against what the canister reported at the end
of the run that completed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pipeline.errors import PrepError
from pipeline.targets.append import AppendFile
from pipeline.targets.profile import RoleProfile
from pipeline.targets.remote_file import RemoteFile
from pipeline.targets.session import TargetSession
from pipeline.upload.journal import FileRecord, Journal
from pipeline.upload.plan import LocalFile, plan_chunks
from pipeline.upload.reasons import Restart, Why
from pipeline.upload.sender import Sender


@dataclass
class AppendMode:
    """Append addressing: chunks extend the file in arrival order; never repeated."""

    name: ClassVar[str] = "append"
    remote_names_role: ClassVar[bool] = True
    window: int = 1  # unused: appends go one at a time
    strict_order: bool = True

    @property
    def concurrent(self) -> bool:
        return False

    def driver(self, session: TargetSession, role: RoleProfile, remote: str) -> AppendFile:
        return AppendFile(session, role, remote)

    def view(self, driver: RemoteFile) -> Any:
        return driver.held()

    def contradiction(self, driver: RemoteFile, record: FileRecord, *, verify: bool) -> Restart | None:
        """A complete journal is doubted when the canister's length query reports another length than
        at the end of the run that completed the file (or, before any step ran, than the file's size).
        Kinds without a length query cannot show their bytes (their load steps are the check)."""
        if not record.bytes_complete:
            return None
        expected = record.canister_view
        if expected is None and record.steps_done == 0:
            expected = record.size
        now = self.view(driver)
        if now is None or expected is None or now == expected:
            return None
        return Restart(
            Why.CANISTER_DISAGREES,
            f"the journal says complete, the canister holds {now:,} bytes of {record.role} "
            f"(it held {expected:,} when the last run ended)",
        )

    def reverifies(self, restart: Restart) -> bool:
        return False  # nothing to read back: a doubted file is sent again (or restored from stable memory)

    def status_row(self, driver: RemoteFile, record: FileRecord | None) -> dict[str, Any]:
        held = self.view(driver)
        row: dict[str, Any] = {"addressing": self.name, "canister_bytes": held, "canister_view": held}
        if record is not None:
            row["acknowledged_bytes"] = record.acked_bytes
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
        assert isinstance(driver, AppendFile)
        record = journal.record
        assert record is not None
        acked = self._resume_point(sender, journal, driver, resumed)
        chunks = plan_chunks(record.size, record.chunk_size)
        sender.progress.begin_file(f"{record.role} → {record.remote}", record.size, acked)
        try:
            for chunk in chunks:
                if chunk.length and chunk.end > acked:
                    sender.send_chunk(journal, driver, local, chunk)
        finally:
            sender.progress.end_file()
        held = driver.remote_length()
        if held is not None and held != record.size:
            journal.update(FileRecord.reset_acked)
            raise PrepError(
                f"canister {record.canister_id} holds {held:,} bytes of {record.role}, "
                f"expected {record.size:,}",
                hint="run prep upload again: it resets the file and sends it once more",
            )
        sender.progress.event(
            "verify",
            role=record.role,
            ok=True,
            bytes=record.size,
            method="length" if held is not None else "acknowledged",
        )
        journal.update(FileRecord.mark_bytes_complete)

    def _resume_point(self, sender: Sender, journal: Journal, driver: AppendFile, resumed: bool) -> int:
        """Where appending continues: the journal's acknowledged bytes when the canister agrees, else 0."""
        record = journal.record
        assert record is not None
        held = driver.remote_length()
        if resumed and held is not None and held == record.acked_bytes:
            if held:
                sender.progress.event("resume", role=record.role, action="continue", bytes_done=held)
            return held
        if held == 0 and record.acked_bytes == 0:
            return 0
        if driver.role.reset is None:
            raise PrepError(
                f"canister {record.canister_id} holds {held:,} bytes of {record.role} that prep cannot "
                "account for, and this kind has no reset call",
                hint="reinstall the canister, then run prep upload again",
            )
        sender.run_call(driver.role.reset, role=record.role)
        if resumed and record.acked_bytes:
            sender.progress.event(
                "resume",
                role=record.role,
                action="restart",
                **Restart(
                    Why.CANISTER_DISAGREES, f"canister holds {held} bytes, journal {record.acked_bytes}"
                ).fields(),
            )
        journal.update(FileRecord.reset_acked)
        return 0
