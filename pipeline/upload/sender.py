"""Sending calls exactly once: upload chunks (journaled with their envelopes) and step calls.

A chunk's call is signed once and resent as the same envelope until its outcome is certified; only a
call proven never to execute (expired and unknown) or rejected in a way that changed nothing (transient
reject, trap) is signed again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import PrepError
from pipeline.ic.calls import is_retryable
from pipeline.ic.client import IcClient, SignedCall
from pipeline.ic.delivery import deliver
from pipeline.ic.errors import CallExpired, CallRejected
from pipeline.targets.calls import CanisterRefused
from pipeline.targets.profile import CallSpec, RoleProfile
from pipeline.targets.remote_file import RemoteFile
from pipeline.targets.session import TargetSession
from pipeline.upload.flow import FlowControl, Slot
from pipeline.upload.journal import FileRecord, InFlight, Journal
from pipeline.upload.plan import Chunk, LocalFile
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import UploadReport

MAX_SIGNATURES_PER_CHUNK = 6  # fresh signatures after expiries / retryable rejects, then give up


@dataclass
class Sender:
    client: IcClient
    session: TargetSession
    progress: UploadProgress
    report: UploadReport
    flow: FlowControl
    _report_lock: threading.Lock = field(default_factory=threading.Lock)

    def send_chunk(
        self, journal: Journal, driver: RemoteFile, local: LocalFile, chunk: Chunk, slot: Slot | None = None
    ) -> None:
        """Sends one chunk within the flow's window: in `slot` when the caller already holds one."""
        slot = slot or self.flow.acquire(chunk.length)
        try:
            data = local.read(chunk.offset, chunk.length)
            # Offset chunks other than 0 rewrite the same bytes if repeated: their envelopes need no flush.
            idempotent = driver.idempotent(chunk.offset)
            _, resent = self._exactly_once(
                driver.upload,
                driver.role.name,
                journal,
                piece=chunk,
                sync_envelope=not idempotent,
                appends=driver.appends,
                **driver.upload_vars(chunk.offset, data),
            )
            slot.acknowledged = True
        finally:
            self.flow.release(slot)
        with self._report_lock:
            self.report.bytes_sent += chunk.length
            self.report.chunks_sent += 1
        self.progress.chunk(driver.role.name, chunk.index, chunk.length, resent=resent, offset=chunk.offset)

    def settle_inflight(self, journal: Journal, driver: RemoteFile) -> None:
        """Finds out what the calls of a killed run did: resend their stored envelopes exactly once.

        An entry without a chunk is a journaled after-step (see `run_call`); one that is not the role's
        next step any more is left unsent.
        """
        record = journal.record
        assert record is not None
        for entry in list(record.inflight.values()):
            spec = driver.upload if entry.chunk is not None else pending_step(record, driver.role, entry)
            envelope = journal.envelope(entry.request_id) if spec is not None else None
            call = SignedCall(
                record.canister_id,
                entry.method,
                bytes.fromhex(entry.request_id),
                envelope or b"",
                entry.expiry_ns,
            )
            executed = envelope is not None and spec is not None and self._settle_one(spec, call, record.role)
            self.progress.event(
                "resume",
                role=record.role,
                action="settled",
                chunk=entry.chunk,
                method=entry.method,
                executed=executed,
            )
            if executed:
                journal.settle(entry.request_id, *done_change(entry, driver.appends))
            else:
                journal.settle(entry.request_id)

    def _settle_one(self, spec: CallSpec, call: SignedCall, label: str) -> bool:
        """Whether a killed run's call executed, as proven by its certified status or by its expiry
        passing unknown. A refused resend proves nothing (see delivery): when neither proof comes,
        the error propagates and the call stays in the journal for the next run to settle."""
        try:
            outcome = deliver(
                self.client,
                call,
                on_retry=lambda why: self.progress.retry(label, why),
                sent_before=True,
            )
        except (CallExpired, CallRejected):
            return False  # never ran, or ran and was rolled back
        try:
            self.session.interpret(spec, outcome.reply)
        except CanisterRefused:
            return False  # ran and answered Err: the canister refused it, nothing was done
        return True

    def run_call(self, spec: CallSpec, *, role: str | None, journal: Journal | None = None) -> Any:
        """A query, or an update delivered exactly once (re-signed only when provably unexecuted).

        With a `journal`, the update is that file's next after-step: its envelope is journaled before the
        first submission and its success advances `steps_done`, so a killed run's step is settled by
        `settle_inflight`, never run twice.
        """
        self.progress.event("step", method=spec.method, role=role)
        if self.session.is_query(spec):
            answer = self.session.query(spec)
        else:
            answer = self._update(spec, role or self.session.profile.kind, journal)
        self.report.steps.append(spec.method)
        return answer

    def _update(self, spec: CallSpec, label: str, journal: Journal | None) -> Any:
        answer, _ = self._exactly_once(spec, label, journal)
        return answer

    def _exactly_once(
        self,
        spec: CallSpec,
        label: str,
        journal: Journal | None,
        *,
        piece: Chunk | None = None,
        sync_envelope: bool = True,
        appends: bool = False,
        **variables: Any,
    ) -> tuple[Any, bool]:
        """Delivers one update call (a chunk when `piece` is given) and returns (answer, re-signed).

        With a `journal`, the envelope is journaled before its first submission and the outcome settled
        there, so a killed run's call is settled by `settle_inflight`, never executed twice.
        """
        resent = False
        for attempt in range(MAX_SIGNATURES_PER_CHUNK):
            call = self.session.prepare(spec, **variables)
            where = (piece.index, piece.offset, piece.length) if piece is not None else ()
            entry = InFlight(call.request_id.hex(), call.method, call.expiry_ns, *where)
            if journal is not None:
                journal.add_inflight(entry, call.envelope, sync_envelope=sync_envelope)
            try:
                outcome = deliver(
                    self.client,
                    call,
                    on_retry=lambda why: self.progress.retry(label, why),
                    on_overload=self.flow.overloaded,
                )
            except CallExpired as err:
                _settle(journal, entry)
                self.progress.retry(label, str(err))
                resent = True
                continue
            except CallRejected as err:
                _settle(journal, entry)
                if is_retryable(err) and attempt + 1 < MAX_SIGNATURES_PER_CHUNK:
                    self.progress.retry(label, str(err))
                    resent = True
                    time.sleep(self.client.retry.error_delay(attempt))
                    continue
                raise
            try:
                answer = self.session.interpret(spec, outcome.reply)
            except PrepError:
                _settle(journal, entry)
                raise
            _settle(journal, entry, *done_change(entry, appends))
            return answer, resent
        what = f"chunk {piece.index} of {label}" if piece is not None else spec.method
        raise PrepError(
            f"{what} was not accepted after {MAX_SIGNATURES_PER_CHUNK} tries",
            hint="the network is refusing or losing messages; run the same command again later (it resumes)",
        )


def _settle(journal: Journal | None, entry: InFlight, *change: Any) -> None:
    if journal is not None:
        journal.settle(entry.request_id, *change)


def pending_step(record: FileRecord, role: RoleProfile, entry: InFlight) -> CallSpec | None:
    """The after-step a journaled step call stands for: the role's next one, if the call is that step."""
    if not record.bytes_complete or record.steps_done >= len(role.after):
        return None
    spec = role.after[record.steps_done]
    return spec if spec.method == entry.method else None


def done_change(entry: InFlight, appends: bool) -> tuple[Any, ...]:
    """The journal transition (and its arguments) for an executed call: its chunk, or the next step."""
    if entry.chunk is None:  # a journaled after-step
        return (FileRecord.mark_step_done,)
    return FileRecord.mark_chunk_done, entry, appends
