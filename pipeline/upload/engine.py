"""The upload engine: files into a canister, resumable, exactly once, verified, then loaded.

Order of work: hash the local files; preflight (interface, code, access, limits) before any byte;
show the plan (and on mainnet ask); per file settle the journal's in-flight calls, ask the canister
where it stands, send what is missing, prove the result; then run the profile's steps.
An upgrade (module hash change) seen at any check starts every file over: append files are sent
again, unless their profile role keeps them in stable memory (`stable`): then the steps that copy them
back are rerun and the restored length checked; offset files (in stable memory, they survive upgrades)
are read back and resent where they differ. The steps after the bytes are journaled like chunks: a
killed run's step is settled from its stored envelope, never executed twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError
from pipeline.ic.client import IcClient
from pipeline.ic.errors import CallRejected
from pipeline.sha import sha256_file
from pipeline.targets.append import AppendFile
from pipeline.targets.calls import CanisterRefused, render
from pipeline.targets.offset import OffsetFile
from pipeline.targets.profile import CallSpec, RoleProfile
from pipeline.targets.session import TargetSession
from pipeline.upload import budget, preflight
from pipeline.upload.append_upload import AppendUpload
from pipeline.upload.journal import FileRecord, Journal, journal_path
from pipeline.upload.lock import FileLocks
from pipeline.upload.offset_upload import OffsetUpload
from pipeline.upload.plan import LocalFile, chunk_size_for, plan_chunks
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import DEFAULT_WINDOW, UploadFile, UploadReport, UploadRequest
from pipeline.upload.sender import Sender

__all__ = ["DEFAULT_WINDOW", "UploadEngine", "UploadFile", "UploadReport", "UploadRequest"]

MAX_FILE_ATTEMPTS = 3  # whole-file restarts (upgrade seen, remote prefix wrong) before giving up
UPGRADED_DURING = "canister upgraded during the upload (module hash changed)"
UPGRADED_SINCE = "canister code changed since the last run (module hash)"


class UploadEngine:
    """One upload run. `confirm(plan)` is asked before a mainnet upload (None: refuse there)."""

    def __init__(
        self,
        client: IcClient,
        request: UploadRequest,
        progress: UploadProgress | None = None,
        confirm: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self.client = client
        self.request = request
        self.profile = request.profile
        self.progress = progress or UploadProgress()
        self.confirm = confirm
        remotes = {r.name: r.remote for r in self.profile.roles} | {f.role: f.remote for f in request.files}
        base = {f"remote_{role}": remote for role, remote in remotes.items()} | {
            "principal": client.principal
        }
        self.remotes = remotes
        # Profile defaults may refer to other variables, e.g. load_args = ["--model", "{remote_model}"].
        defaults = {name: render(value, base) for name, value in self.profile.defaults.items()}
        variables = {**defaults, **request.variables, **base}
        self.session = TargetSession(client, request.canister_id, self.profile, variables)
        self.report = UploadReport(request.canister_id, self.profile.kind)
        self.sender = Sender(client, self.session, self.progress, self.report)
        self.offset = OffsetUpload(self.sender, request.window, request.strict_order)
        self.append = AppendUpload(self.sender)
        concurrent = self.profile.addressing == "offset" and not request.strict_order and request.window > 1
        self._formats: dict[str, str] = {}  # role -> what its format check found
        self._chunk_size = chunk_size_for(self.profile.max_chunk_size, concurrent=concurrent)

    # ---- the run --------------------------------------------------------------------------------

    def run(self) -> UploadReport:
        with FileLocks(
            [self._journal_path(remote) for remote in self.remotes.values()],
            wait=self.request.wait_for_lock,
            on_wait=lambda path, pid: self.progress.event("waiting", lock=str(path), holder=pid),
        ):
            return self._run()

    def _journal_path(self, remote: str) -> Path:
        return journal_path(
            self.request.workspace_root, self.client.network.url, self.request.canister_id, remote
        )

    def _run(self) -> UploadReport:
        started = time.monotonic()
        module_hash = self._preflight()
        records = [self._describe(f) for f in self.request.files]
        cycles = budget.check_budget(
            self.client, self.profile, self.request.canister_id, records,
            [f.path for f in self.request.files], self.request.workspace_root, self.request.budget,
            self.progress,
        )  # fmt: skip
        self._announce(records, cycles.estimate.total)
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
        self.report.cycles = budget.finish(
            self.client, self.request.canister_id, cycles, loaded=self.request.run_steps
        )
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
            chunk_size=self._chunk_size,
            module_hash=None,
        )

    def _preflight(self) -> bytes:
        """Everything that can refuse the upload, before hashing or sending anything."""
        cid = self.request.canister_id
        if self.request.validate:
            self._formats = preflight.check_formats(
                self.profile, [(f.role, f.path) for f in self.request.files]
            )
        files = [(f.role, f.path, f.path.stat().st_size) for f in self.request.files]
        preflight.check_files(self.profile, files)
        module_hash = preflight.check_module(self.client, cid)
        if self.request.check_interface:  # an older release may lack optional methods: use fallbacks
            self.profile = self.session.profile = preflight.check_interface(self.client, cid, self.profile)
        preflight.check_access(self.session)
        return module_hash

    def _announce(self, records: list[FileRecord], cost: int) -> None:
        total = sum(r.size for r in records)
        messages = sum(len(plan_chunks(r.size, r.chunk_size)) for r in records)
        plan = {
            "network": self.client.network.name,
            "url": self.client.network.url,
            "canister": self.request.canister_id,
            "kind": self.profile.kind,
            "files": [
                {"role": r.role, "remote": r.remote, "size": r.size, "sha256": r.local_sha256}
                | {"format": self._formats.get(r.role, "not checked (--no-validate)")}
                for r in records
            ],
            "bytes": total,
            "messages": messages,
            "chunk_size": self._chunk_size,
            "estimated_cycles": cost,
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
            self.sender.settle_inflight(journal, driver)
            previous = journal.record
        reason = self._restart_reason(previous, wanted, restart)
        upgraded = reason in (UPGRADED_DURING, UPGRADED_SINCE)
        if (
            upgraded
            and previous is not None
            and previous.same_upload(wanted)
            and self._stored(previous, role)
        ):
            assert isinstance(driver, AppendFile)
            reason = self._restore(journal, driver, wanted.size, wanted.module_hash, reason)
        if reason is None and isinstance(driver, OffsetFile):
            reason = self._contradicted(journal.record, driver)
        # Offset files live in stable memory and survive upgrades and other writers: after either, read
        # the file back and resend only what differs instead of everything.
        reverify = isinstance(driver, OffsetFile) and reason not in (None, "new upload")
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
            and not self.offset.running_sha_matches(driver, journal.record)
        ):
            self.progress.event(
                "resume", role=role.name, action="restart", reason="canister's sha256 differs"
            )
            journal.update(FileRecord.reset_bytes)
        if not journal.record.bytes_complete:
            with LocalFile(upload.path) as local:
                if isinstance(driver, OffsetFile):
                    self.offset.send(journal, driver, local, resumed=reason is None, reverify=reverify)
                else:
                    self.append.send(journal, driver, local, resumed=reason is None)
        self._run_role_steps(journal, role)
        self.report.files.append(
            {"role": role.name, "remote": upload.remote, "size": wanted.size, "sha256": wanted.local_sha256}
        )

    @staticmethod
    def _stored(record: FileRecord, role: RoleProfile) -> bool:
        """Whether the journal puts this file's bytes in stable memory: all sent, and the store step ran."""
        return role.stable is not None and record.bytes_complete and record.steps_done > role.stable.kept_by

    def _restore(
        self, journal: Journal, driver: AppendFile, size: int, module_hash: str | None, why: str
    ) -> str | None:
        """Reruns the role's restore step (after an upgrade, or before a step that uses the bytes up);
        None when the bytes are back in the heap, else why not.

        Proven: the restored buffer has the local file's length, and the journal shows this very file
        (its sha256 and size) was sent with each chunk acknowledged once, length-checked before the store
        step ran, and that the store step succeeded. Not proven: the stored bytes themselves (the canister
        has no hash query); the setup steps that follow parse them, which catches most corruption.
        """
        stable = driver.role.stable
        assert stable is not None
        self.progress.event("resume", role=driver.role.name, action="restore", reason=why)
        journal.update(FileRecord.rewind_steps, stable.restore)
        try:
            self.sender.run_call(driver.role.after[stable.restore], role=driver.role.name, journal=journal)
        except (CanisterRefused, CallRejected) as err:
            return f"its stable copy could not be restored ({err})"
        held = driver.remote_length()
        if held != size:
            return f"its stable copy holds {held or 0:,} bytes, not {size:,}"
        # Only now is the file this code's: a run killed before here restores (and checks) again.
        journal.update(FileRecord.adopt_code, module_hash)
        self.progress.event("verify", role=driver.role.name, ok=True, bytes=held, method="restored length")
        return None

    def _bring_back(self, name: str, step: CallSpec, module_hash: str | None) -> None:
        """Makes sure kept role `name` is in the heap before `step` uses it up: when the heap holds fewer
        or more bytes than the journal's record of the file (this run may not have the file), restore it.
        Without a journal that vouches for a stable copy the step runs as it is (the canister says if the
        bytes are missing)."""
        role = self.profile.role(name)
        url, cid = self.client.network.url, self.request.canister_id
        journal = Journal(journal_path(self.request.workspace_root, url, cid, self.remotes[name]))
        record = journal.record
        if record is None or record.inflight or not self._stored(record, role):
            return
        driver = AppendFile(self.session, role, record.remote)
        if driver.remote_length() == record.size:
            return
        why = self._restore(journal, driver, record.size, module_hash, f"{step.method} uses it up")
        if why is not None:
            _send_again(journal)
            raise PrepError(
                f"{name} must be sent again: {why}",
                hint=f"run prep upload again with the {name} file too: it sends it once more",
            )
        self._run_role_steps(journal, role)

    @staticmethod
    def _contradicted(record: FileRecord | None, driver: OffsetFile) -> str | None:
        """Why a journal that says "complete" cannot be trusted: the canister holds another size (the
        file was removed or rewritten behind prep's back)."""
        if record is None or not record.bytes_complete:
            return None
        held = driver.remote_size()
        if held == record.size:
            return None
        return f"the journal says complete, the canister holds {held or 0:,} of {record.size:,} bytes"

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

    # ---- steps ----------------------------------------------------------------------------------

    def _run_role_steps(self, journal: Journal, role: RoleProfile) -> None:
        record = journal.record
        assert record is not None
        ran: CallSpec | None = None
        for index, spec in enumerate(role.after):
            if index < record.steps_done:
                continue
            if index > 0:
                self._check_length_after(journal, role, role.after[index - 1])
            for name in spec.consumes:
                self._bring_back(name, spec, record.module_hash)
            try:
                self.sender.run_call(spec, role=role.name, journal=journal)
            except PrepError:
                # A failed after-step leaves the canister's buffers in an unknown state: start over next run.
                _send_again(journal)
                raise
            ran = spec
        if ran is not None:
            self._check_length_after(journal, role, ran)

    def _check_length_after(self, journal: Journal, role: RoleProfile, spec: CallSpec) -> None:
        """A step that moves the role's bytes left the length its profile says (checked before the next)."""
        record = journal.record
        assert record is not None
        if spec.length_after is None:
            return
        expected = record.size if spec.length_after == "file" else 0
        held = AppendFile(self.session, role, record.remote).remote_length()
        if held == expected:
            return
        _send_again(journal)
        raise PrepError(
            f"after {spec.method} canister {record.canister_id} holds {held or 0:,} bytes of {role.name}, "
            f"expected {expected:,}",
            hint="run prep upload again: it sends the file once more",
        )

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
            self.sender.run_call(spec, role=None)
        for journal in journals.values():
            journal.update(FileRecord.mark_loaded, key)


def _send_again(journal: Journal) -> None:
    """Marks the journal's file to be sent from its first byte by the next run."""
    journal.update(FileRecord.send_again)
