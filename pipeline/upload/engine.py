"""The upload engine: files into a canister, resumable, exactly once, verified, then loaded.

Order of work: hash the local files; preflight (interface, code, access, limits) before any byte;
show the plan (and on mainnet ask); per file settle the journal's in-flight calls, ask the canister
where it stands, send what is missing, prove the result; then run the profile's steps.
An upgrade (module hash change) seen at any check restarts every file from scratch.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError
from pipeline.ic.client import IcClient, SignedCall
from pipeline.ic.errors import CallRejected
from pipeline.sha import sha256_file
from pipeline.targets.append import AppendFile
from pipeline.targets.calls import render
from pipeline.targets.offset import OffsetFile
from pipeline.targets.profile import CallSpec, RoleProfile, TargetProfile
from pipeline.targets.retry import Backoff
from pipeline.targets.session import TargetSession
from pipeline.upload import preflight
from pipeline.upload.delivery import CallExpired, deliver, is_retryable
from pipeline.upload.journal import FileRecord, InFlight, Journal, journal_path
from pipeline.upload.plan import Chunk, LocalFile, estimated_cycles, plan_chunks
from pipeline.upload.progress import UploadProgress

DEFAULT_WINDOW = 12  # concurrent chunks in flight for offset targets: several land in each block
MAX_SIGNATURES_PER_CHUNK = 6  # fresh signatures after expiries / retryable rejects, then give up
MAX_FILE_ATTEMPTS = 3  # whole-file restarts (upgrade seen, remote prefix wrong) before giving up
VERIFY_ROUNDS = 3
UPGRADED_DURING = "canister upgraded during the upload (module hash changed)"
UPGRADED_SINCE = "canister code changed since the last run (module hash)"


@dataclass(frozen=True)
class UploadFile:
    role: str
    path: Path
    remote: str
    sha256: str | None = None  # known from the build manifest; computed when None


@dataclass(frozen=True)
class UploadRequest:
    profile: TargetProfile
    canister_id: str
    files: tuple[UploadFile, ...]
    workspace_root: Path
    variables: dict[str, Any] = field(default_factory=dict)  # load_args, max_tokens_*, ...
    strict_order: bool = False
    window: int = DEFAULT_WINDOW
    check_interface: bool = True
    run_steps: bool = True


@dataclass
class UploadReport:
    canister_id: str
    kind: str
    files: list[dict[str, Any]] = field(default_factory=list)
    bytes_sent: int = 0
    chunks_sent: int = 0
    chunks_resent: int = 0
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0


class UploadEngine:
    """One upload run. `confirm(plan)` is asked before a mainnet upload (None: refuse there)."""

    def __init__(
        self,
        client: IcClient,
        request: UploadRequest,
        progress: UploadProgress | None = None,
        confirm: Callable[[dict[str, Any]], bool] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.client = client
        self.request = request
        self.profile = request.profile
        self.progress = progress or UploadProgress()
        self.confirm = confirm
        self.backoff = backoff or Backoff()
        remotes = {r.name: r.remote for r in self.profile.roles} | {f.role: f.remote for f in request.files}
        base = {f"remote_{role}": remote for role, remote in remotes.items()} | {
            "principal": client.principal
        }
        self.remotes = remotes
        # Profile defaults may refer to other variables, e.g. load_args = ["--model", "{remote_model}"].
        defaults = {name: render(value, base) for name, value in self.profile.defaults.items()}
        variables = {**defaults, **request.variables, **base}
        self.session = TargetSession(client, request.canister_id, self.profile, variables, self.backoff)
        self.report = UploadReport(request.canister_id, self.profile.kind)

    # ---- the run --------------------------------------------------------------------------------

    def run(self) -> UploadReport:
        started = time.monotonic()
        module_hash = self._preflight()
        records = [self._describe(f) for f in self.request.files]
        self._announce(records)
        for attempt in range(MAX_FILE_ATTEMPTS):
            self.report.files.clear()
            try:
                for upload, record in zip(self.request.files, records, strict=True):
                    self._upload_file(upload, record, module_hash, restart=attempt > 0)
            except PrepError:
                if preflight.check_module(self.client, self.request.canister_id) == module_hash:
                    raise
            now_hash = preflight.check_module(self.client, self.request.canister_id)
            if now_hash == module_hash:
                break
            self.progress.event("restart", reason=UPGRADED_DURING)
            module_hash = now_hash
        else:
            raise PrepError(
                f"canister {self.request.canister_id} kept changing its code during the upload",
                hint="wait until nobody upgrades it, then run prep upload again",
            )
        if self.request.run_steps:
            self._run_load_steps(module_hash)
        self.report.seconds = time.monotonic() - started
        self.report.chunks_resent = self.progress.resent
        self.progress.event(
            "done",
            bytes_sent=self.report.bytes_sent,
            chunks_sent=self.report.chunks_sent,
            chunks_resent=self.report.chunks_resent,
            seconds=round(self.report.seconds, 3),
        )
        return self.report

    def _describe(self, upload: UploadFile) -> FileRecord:
        size = upload.path.stat().st_size
        return FileRecord(
            network_url=self.client.network.url,
            canister_id=self.request.canister_id,
            kind=self.profile.kind,
            role=upload.role,
            remote=upload.remote,
            local_sha256=upload.sha256 or sha256_file(upload.path),
            size=size,
            chunk_size=self.profile.max_chunk_size,
            module_hash=None,
        )

    def _preflight(self) -> bytes:
        """Everything that can refuse the upload, before hashing or sending anything."""
        cid = self.request.canister_id
        files = [(f.role, f.path, f.path.stat().st_size) for f in self.request.files]
        preflight.check_files(self.profile, files)
        module_hash = preflight.check_module(self.client, cid)
        if self.request.check_interface:
            preflight.check_interface(self.client, cid, self.profile)
        preflight.check_access(self.session)
        return module_hash

    def _announce(self, records: list[FileRecord]) -> None:
        total = sum(r.size for r in records)
        messages = sum(len(plan_chunks(r.size, r.chunk_size)) for r in records)
        plan = {
            "network": self.client.network.name,
            "url": self.client.network.url,
            "canister": self.request.canister_id,
            "kind": self.profile.kind,
            "files": [
                {"role": r.role, "remote": r.remote, "size": r.size, "sha256": r.local_sha256}
                for r in records
            ],
            "bytes": total,
            "messages": messages,
            "chunk_size": self.profile.max_chunk_size,
            "estimated_cycles": estimated_cycles(total, messages),
        }
        self.progress.event("plan", **plan)
        if self.client.network.is_mainnet and (self.confirm is None or not self.confirm(plan)):
            raise PrepError(
                f"not uploading {total:,} bytes in {messages} messages to mainnet without confirmation",
                hint=f"pass --yes to confirm (it costs about {plan['estimated_cycles'] / 1e12:.3f} T cycles)",
            )

    # ---- one file -------------------------------------------------------------------------------

    def _upload_file(
        self, upload: UploadFile, wanted: FileRecord, module_hash: bytes, *, restart: bool
    ) -> None:
        role = self.profile.role(upload.role)
        journal = Journal(
            journal_path(self.request.workspace_root, wanted.network_url, wanted.canister_id, wanted.remote)
        )
        wanted.module_hash = module_hash.hex()
        driver: OffsetFile | AppendFile
        if self.profile.addressing == "offset":
            driver = OffsetFile(self.session, role, upload.remote)
        else:
            driver = AppendFile(self.session, role, upload.remote)
        previous = journal.record
        if previous is not None and previous.canister_id == wanted.canister_id:
            self._settle_inflight(journal, driver)
            previous = journal.record
        reason = self._restart_reason(previous, wanted, restart)
        # Offset files live in stable memory and survive upgrades: after one, read the file back and
        # resend only what differs instead of everything.
        reverify = isinstance(driver, OffsetFile) and reason in (UPGRADED_DURING, UPGRADED_SINCE)
        if reason is not None:
            if previous is not None:
                action = "reverify" if reverify else "restart"
                self.progress.event("resume", role=role.name, action=action, reason=reason)
            journal.start(FileRecord(**{**vars(wanted), "done": [], "inflight": {}}))
        assert journal.record is not None
        if (
            journal.record.bytes_complete
            and self.request.strict_order
            and isinstance(driver, OffsetFile)
            and not self._running_sha_matches(driver, journal.record)
        ):
            self.progress.event(
                "resume", role=role.name, action="restart", reason="canister's sha256 differs"
            )
            journal.update(lambda r: (setattr(r, "bytes_complete", False), r.set_done_chunks(set())))
        if not journal.record.bytes_complete:
            with LocalFile(upload.path) as local:
                if isinstance(driver, OffsetFile):
                    self._send_offset(journal, driver, local, resumed=reason is None, reverify=reverify)
                else:
                    self._send_append(journal, driver, local, resumed=reason is None)
        self._run_role_steps(journal, role)
        self.report.files.append(
            {"role": role.name, "remote": upload.remote, "size": wanted.size, "sha256": wanted.local_sha256}
        )

    @staticmethod
    def _restart_reason(previous: FileRecord | None, wanted: FileRecord, restart: bool) -> str | None:
        if previous is None:
            return "new upload"
        if restart:
            return UPGRADED_DURING
        if not previous.same_upload(wanted):
            return "different file or chunk size than the journal's"
        if previous.module_hash != wanted.module_hash:
            return UPGRADED_SINCE
        return None

    def _settle_inflight(self, journal: Journal, driver: OffsetFile | AppendFile) -> None:
        """Finds out what the calls of a killed run did: resend their stored envelopes exactly once."""
        record = journal.record
        assert record is not None
        for entry in list(record.inflight.values()):
            envelope = journal.envelope(entry.request_id)
            call = SignedCall(
                record.canister_id,
                entry.method,
                bytes.fromhex(entry.request_id),
                envelope or b"",
                entry.expiry_ns,
            )
            executed = False
            try:
                if envelope is not None:
                    outcome = deliver(self.client, call, backoff=self.backoff)
                    self.session.interpret(driver.upload, outcome.reply)
                    executed = True
            except (CallExpired, CallRejected, PrepError):
                executed = False
            self.progress.event(
                "resume", role=record.role, action="settled", chunk=entry.chunk, executed=executed
            )
            journal.settle(
                entry.request_id, change=_mark_done(entry, self.profile.addressing) if executed else None
            )

    # ---- offset-addressed -----------------------------------------------------------------------

    def _send_offset(
        self, journal: Journal, driver: OffsetFile, local: LocalFile, *, resumed: bool, reverify: bool = False
    ) -> None:
        record = journal.record
        assert record is not None
        chunks = plan_chunks(record.size, record.chunk_size)
        done = record.done_chunks()
        if resumed and done:
            done = self._offset_resume_point(driver, chunks, done)
            self.progress.event(
                "resume", role=record.role, action="continue", chunks_done=len(done), chunks=len(chunks)
            )
        journal.update(lambda r: r.set_done_chunks(done))
        self.progress.begin_file(
            f"{record.role} → {record.remote}", record.size, sum(chunks[i].length for i in done)
        )
        try:
            todo = [c for c in chunks if c.index not in done]
            if reverify:
                todo = self._verify_offset(driver, local, chunks)
                todo = chunks if any(c.index == 0 for c in todo) else todo
                kept = {c.index for c in chunks} - {c.index for c in todo}
                journal.update(lambda r: r.set_done_chunks(kept))
                self.progress.event(
                    "verify", role=record.role, ok=not todo, bad_chunks=[c.index for c in todo]
                )
            if todo or not reverify or self.request.strict_order:
                self._send_until_verified(journal, driver, local, chunks, todo)
        finally:
            self.progress.end_file()
        self.progress.event(
            "verify", role=record.role, ok=True, sha256=record.local_sha256, bytes=record.size
        )
        journal.update(lambda r: setattr(r, "bytes_complete", True))

    def _send_until_verified(
        self, journal: Journal, driver: OffsetFile, local: LocalFile, chunks: list[Chunk], todo: list[Chunk]
    ) -> None:
        """Sends `todo`, reads the whole file back, and resends what differs, a few rounds at most."""
        record = journal.record
        assert record is not None
        for _round in range(VERIFY_ROUNDS):
            self._send_chunks(journal, driver, local, todo)
            bad = self._verify_offset(driver, local, chunks)
            if not bad and self.request.strict_order and not self._running_sha_matches(driver, record):
                bad = chunks  # the canister's running hash restarts only at offset 0: resend in order
            if not bad:
                break
            self.progress.event("verify", role=record.role, ok=False, bad_chunks=sorted(c.index for c in bad))
            todo = chunks if any(c.index == 0 for c in bad) else bad
            resend = {c.index for c in todo}
            journal.update(lambda r, resend=resend: r.set_done_chunks(r.done_chunks() - resend))
        else:
            raise PrepError(
                f"{record.remote} on canister {record.canister_id} still differs from {local.path} "
                f"after {VERIFY_ROUNDS} rounds of re-sending",
                hint="something else is writing this file; stop it and run prep upload again",
            )

    def _offset_resume_point(self, driver: OffsetFile, chunks: list[Chunk], done: set[int]) -> set[int]:
        """Keeps the journal's done chunks only when the canister's file can hold them."""
        if 0 not in done:
            return set()  # chunk 0 truncates the file: nothing sent before it counts
        remote_size = driver.remote_size()
        highest = max(chunks[i].end for i in done)
        if remote_size is None or remote_size < highest:
            return set()
        return done

    def _send_chunks(self, journal: Journal, driver: OffsetFile, local: LocalFile, todo: list[Chunk]) -> None:
        if not todo:
            return
        if todo[0].index == 0 or self.request.strict_order:
            first, rest = todo[0], todo[1:]
            self._send_chunk(journal, driver, local, first)
            if self.request.strict_order:
                for chunk in rest:
                    self._send_chunk(journal, driver, local, chunk)
                return
        else:
            rest = todo
        pool = ThreadPoolExecutor(max_workers=self.request.window, thread_name_prefix="upload")
        try:
            futures = [pool.submit(self._send_chunk, journal, driver, local, c) for c in rest]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in finished if f.exception() is not None]
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        finally:
            # On a failure or Ctrl-C, chunks not yet started stay unsent; those in flight finish and are
            # journaled, so the next run knows exactly what landed.
            pool.shutdown(wait=True, cancel_futures=True)

    def _verify_offset(self, driver: OffsetFile, local: LocalFile, chunks: list[Chunk]) -> list[Chunk]:
        """Reads the file back range by range (concurrent queries); returns the chunks that differ."""
        remote_size = driver.remote_size()
        if remote_size is not None and remote_size > local.size:
            return chunks  # a longer stale file: only a restart from chunk 0 truncates it

        def same(chunk: Chunk) -> bool:
            if remote_size is None or chunk.end > remote_size:
                return False
            return driver.read(chunk.offset, chunk.length) == local.read(chunk.offset, chunk.length)

        with ThreadPoolExecutor(max_workers=self.request.window, thread_name_prefix="verify") as pool:
            results = list(pool.map(same, chunks))
        return [c for c, ok in zip(chunks, results, strict=True) if not ok]

    def _running_sha_matches(self, driver: OffsetFile, record: FileRecord) -> bool:
        try:
            reported = driver.running_sha()
        except PrepError:  # no upload details (e.g. lost in an upgrade): the hash cannot match
            return False
        return reported is None or reported.lower() == record.local_sha256

    # ---- append-only ----------------------------------------------------------------------------

    def _send_append(self, journal: Journal, driver: AppendFile, local: LocalFile, *, resumed: bool) -> None:
        record = journal.record
        assert record is not None
        acked = self._append_resume_point(journal, driver, resumed)
        chunks = plan_chunks(record.size, record.chunk_size)
        self.progress.begin_file(f"{record.role} → {record.remote}", record.size, acked)
        try:
            for chunk in chunks:
                if chunk.length and chunk.end > acked:
                    self._send_chunk(journal, driver, local, chunk)
        finally:
            self.progress.end_file()
        held = driver.remote_length()
        if held is not None and held != record.size:
            journal.update(lambda r: setattr(r, "acked_bytes", 0))
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
        journal.update(lambda r: setattr(r, "bytes_complete", True))

    def _append_resume_point(self, journal: Journal, driver: AppendFile, resumed: bool) -> int:
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
        self._run_call(driver.role.reset, role=record.role)
        if resumed and record.acked_bytes:
            self.progress.event(
                "resume",
                role=record.role,
                action="restart",
                reason=f"canister holds {held} bytes, journal {record.acked_bytes}",
            )
        journal.update(lambda r: setattr(r, "acked_bytes", 0))
        return 0

    # ---- sending one chunk exactly once ---------------------------------------------------------

    def _send_chunk(
        self, journal: Journal, driver: OffsetFile | AppendFile, local: LocalFile, chunk: Chunk
    ) -> None:
        data = local.read(chunk.offset, chunk.length)
        role = driver.role.name
        resent = False
        for attempt in range(MAX_SIGNATURES_PER_CHUNK):
            call = self.session.prepare(driver.upload, **driver.upload_vars(chunk.offset, data))
            entry = InFlight(
                call.request_id.hex(), call.method, call.expiry_ns, chunk.index, chunk.offset, chunk.length
            )
            # Offset chunks other than 0 rewrite the same bytes if repeated: their envelopes need no flush.
            idempotent = isinstance(driver, OffsetFile) and chunk.index != 0
            journal.add_inflight(entry, call.envelope, sync_envelope=not idempotent)
            try:
                outcome = deliver(
                    self.client,
                    call,
                    backoff=self.backoff,
                    on_retry=lambda why: self.progress.retry(role, why),
                )
            except CallExpired as err:
                journal.settle(entry.request_id)
                self.progress.retry(role, str(err))
                resent = True
                continue
            except CallRejected as err:
                journal.settle(entry.request_id)
                if is_retryable(err) and attempt + 1 < MAX_SIGNATURES_PER_CHUNK:
                    self.progress.retry(role, str(err))
                    resent = True
                    time.sleep(self.backoff.error_delay(attempt))
                    continue
                raise
            try:
                self.session.interpret(driver.upload, outcome.reply)
            except PrepError:
                journal.settle(entry.request_id)
                raise
            journal.settle(entry.request_id, change=_mark_done(entry, self.profile.addressing))
            self.report.bytes_sent += chunk.length
            self.report.chunks_sent += 1
            self.progress.chunk(role, chunk.index, chunk.length, resent=resent, offset=chunk.offset)
            return
        raise PrepError(
            f"chunk {chunk.index} of {role} was not accepted after {MAX_SIGNATURES_PER_CHUNK} tries",
            hint="the network is refusing or losing messages; run prep upload again later (it resumes)",
        )

    # ---- steps ----------------------------------------------------------------------------------

    def _run_role_steps(self, journal: Journal, role: RoleProfile) -> None:
        record = journal.record
        assert record is not None
        for index, spec in enumerate(role.after):
            if index < record.steps_done:
                continue
            try:
                self._run_call(spec, role=role.name)
            except PrepError:
                # A failed after-step leaves the canister's buffers in an unknown state: start over next run.
                journal.update(
                    lambda r: (
                        setattr(r, "bytes_complete", False),
                        setattr(r, "acked_bytes", 0),
                        setattr(r, "steps_done", 0),
                    )
                )
                raise
            journal.update(lambda r, i=index: setattr(r, "steps_done", i + 1))

    def _run_load_steps(self, module_hash: bytes) -> None:
        """The kind's steps once every role's file is in: this run's, or an earlier run's (per journal)."""
        url, cid = self.client.network.url, self.request.canister_id
        journals = {
            role: Journal(journal_path(self.request.workspace_root, url, cid, remote))
            for role, remote in self.remotes.items()
        }
        missing = [
            role.name
            for role in self.profile.roles
            if (record := journals[role.name].record) is None
            or not record.bytes_complete
            or record.steps_done < len(role.after)
            or record.module_hash != module_hash.hex()
        ]
        if missing:
            self.progress.event("steps_skipped", missing=missing)
            return
        key = hashlib.sha256(
            repr((module_hash.hex(), sorted(self.session.variables.items(), key=str))).encode()
        ).hexdigest()
        loaded = all(j.record is not None and j.record.loaded == key for j in journals.values())
        for spec in self.profile.steps:
            if loaded and not spec.probe:
                continue
            self._run_call(spec, role=None)
        for journal in journals.values():
            journal.update(lambda r: setattr(r, "loaded", key))

    def _run_call(self, spec: CallSpec, *, role: str | None) -> Any:
        """A query, or an update delivered exactly once (re-signed only when provably unexecuted)."""
        self.progress.event("step", method=spec.method, role=role)
        if self.session.is_query(spec):
            answer = self.session.query(spec)
        else:
            answer = self._update(spec, role or self.profile.kind)
        self.report.steps.append(spec.method)
        return answer

    def _update(self, spec: CallSpec, label: str) -> Any:
        for attempt in range(MAX_SIGNATURES_PER_CHUNK):
            call = self.session.prepare(spec)
            try:
                outcome = deliver(
                    self.client,
                    call,
                    backoff=self.backoff,
                    on_retry=lambda why: self.progress.retry(label, why),
                )
            except CallExpired as err:
                self.progress.retry(label, str(err))
                continue
            except CallRejected as err:
                if is_retryable(err) and attempt + 1 < MAX_SIGNATURES_PER_CHUNK:
                    self.progress.retry(label, str(err))
                    time.sleep(self.backoff.error_delay(attempt))
                    continue
                raise
            return self.session.interpret(spec, outcome.reply)
        raise PrepError(f"{spec.method} was not accepted after {MAX_SIGNATURES_PER_CHUNK} tries")


def _mark_done(entry: InFlight, addressing: str) -> Callable[[FileRecord], None]:
    def change(record: FileRecord) -> None:
        if entry.chunk is None:
            return
        done = record.done_chunks()
        done.add(entry.chunk)
        record.set_done_chunks(done)
        if addressing == "append" and entry.offset == record.acked_bytes:
            record.acked_bytes += entry.length

    return change
