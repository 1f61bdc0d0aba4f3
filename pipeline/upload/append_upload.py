"""Uploading to append-only targets (gpt2, icpp_llama2): strictly sequential, resumed from the length query.

Where the kind has a length query, the upload continues from the bytes the canister holds when they
match the journal; otherwise (or when they do not match) the file is reset and sent again.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.errors import PrepError
from pipeline.targets.append import AppendFile
from pipeline.upload.journal import FileRecord, Journal
from pipeline.upload.plan import LocalFile, plan_chunks
from pipeline.upload.progress import UploadProgress
from pipeline.upload.sender import Sender


@dataclass
class AppendUpload:
    sender: Sender

    @property
    def progress(self) -> UploadProgress:
        return self.sender.progress

    def send(self, journal: Journal, driver: AppendFile, local: LocalFile, *, resumed: bool) -> None:
        record = journal.record
        assert record is not None
        acked = self._resume_point(journal, driver, resumed)
        chunks = plan_chunks(record.size, record.chunk_size)
        self.progress.begin_file(f"{record.role} → {record.remote}", record.size, acked)
        try:
            for chunk in chunks:
                if chunk.length and chunk.end > acked:
                    self.sender.send_chunk(journal, driver, local, chunk)
        finally:
            self.progress.end_file()
        held = driver.remote_length()
        if held is not None and held != record.size:
            journal.update(FileRecord.reset_acked)
            raise PrepError(
                f"canister {record.canister_id} holds {held:,} bytes of {record.role}, "
                f"expected {record.size:,}",
                hint="run prep upload again: it resets the file and sends it once more",
            )
        self.progress.event(
            "verify",
            role=record.role,
            ok=True,
            bytes=record.size,
            method="length" if held is not None else "acknowledged",
        )
        journal.update(FileRecord.mark_bytes_complete)

    def _resume_point(self, journal: Journal, driver: AppendFile, resumed: bool) -> int:
        """Where appending continues: the journal's acknowledged bytes when the canister agrees, else 0."""
        record = journal.record
        assert record is not None
        held = driver.remote_length()
        if resumed and held is not None and held == record.acked_bytes:
            if held:
                self.progress.event("resume", role=record.role, action="continue", bytes_done=held)
            return held
        if held == 0 and record.acked_bytes == 0:
            return 0
        if driver.role.reset is None:
            raise PrepError(
                f"canister {record.canister_id} holds {held:,} bytes of {record.role} that prep cannot "
                "account for, and this kind has no reset call",
                hint="reinstall the canister, then run prep upload again",
            )
        self.sender.run_call(driver.role.reset, role=record.role)
        if resumed and record.acked_bytes:
            self.progress.event(
                "resume",
                role=record.role,
                action="restart",
                reason=f"canister holds {held} bytes, journal {record.acked_bytes}",
            )
        journal.update(FileRecord.reset_acked)
        return 0
