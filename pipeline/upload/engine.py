"""The upload engine: files into a canister, resumable, exactly once, verified, then loaded.

Order of work: hash the local files; preflight (interface, code, access, limits) before any byte;
show the plan (and on mainnet ask); per file settle the journal's in-flight calls, ask the canister
where it stands, send what is missing, prove the result; then run the profile's steps.
An upgrade (module hash change) seen at any check starts every file over: append files are sent
again, unless their profile role keeps them in stable memory (`stable`): then the steps that copy them
back are rerun and the restored length checked; offset files (in stable memory, they survive upgrades)
are read back and resent where they differ. The steps after the bytes are journaled like chunks: a
killed run's step is settled from its stored envelope, never executed twice. The journal never
overrules the canister: what the canister reported about each file when a run ended is recorded and
compared by the next run, and a disagreement re-checks the file (see pipeline.upload.mode).
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
from pipeline.targets.profile import CallSpec, RoleProfile
from pipeline.targets.remote_file import RemoteFile
from pipeline.targets.session import TargetSession
from pipeline.upload import budget, preflight
from pipeline.upload.flow import FlowControl
from pipeline.upload.journal import FileRecord, Journal, journal_path
from pipeline.upload.lock import FileLocks
from pipeline.upload.mode import mode_for
from pipeline.upload.plan import LocalFile, chunk_size_for, plan_chunks
from pipeline.upload.progress import UploadProgress
from pipeline.upload.reasons import Restart, Why
from pipeline.upload.request import DEFAULT_WINDOW, READ_WINDOW, UploadFile, UploadReport, UploadRequest
from pipeline.upload.sender import Sender

__all__ = ["DEFAULT_WINDOW", "UploadEngine", "UploadFile", "UploadReport", "UploadRequest"]

MAX_FILE_ATTEMPTS = 3  # whole-file restarts (upgrade seen, remote prefix wrong) before giving up
# Reasons a journal that claims a stable copy has its role restored from it instead of sending it again.
RESTORABLE = (Why.UPGRADED_DURING, Why.UPGRADED_SINCE, Why.CANISTER_DISAGREES)


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
        self.flow = request.flow or FlowControl(request.window)
        self.sender = Sender(client, self.session, self.progress, self.report, self.flow)
        reads = min(request.window, READ_WINDOW)
        self.mode = mode_for(self.profile, window=reads, strict_order=request.strict_order)
        self._formats: dict[str, str] = {}  # role -> what its format check found
        self._sent: set[str] = set()  # roles whose bytes this run sent (not taken from a journal)
        self._chunk_size = chunk_size_for(self.profile.max_chunk_size, concurrent=self.mode.concurrent)

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
        module_hash = self._upload_files(records, module_hash)
        if self.request.run_steps:
            module_hash = self._load(records, module_hash)
        self._record_views(module_hash)
        self.report.seconds = time.monotonic() - started
        self.report.chunks_resent = self.progress.resent
        self.report.flow = self.flow.stats()
        self.report.cycles = budget.finish(
            self.client, self.request.canister_id, cycles, loaded=self.request.run_steps
        )
        self.progress.event(
            "done",
            bytes_sent=self.report.bytes_sent,
            chunks_sent=self.report.chunks_sent,
            chunks_resent=self.report.chunks_resent,
            seconds=round(self.report.seconds, 3),
            flow=self.report.flow,
        )
        return self.report

    def _upload_files(self, records: list[FileRecord], module_hash: bytes) -> bytes:
        """Every file in; an upgrade seen during the work starts the files over. The code they are in."""
        for attempt in range(MAX_FILE_ATTEMPTS):
            self.report.files.clear()
            try:
                for upload, record in zip(self.request.files, records, strict=True):
                    self._upload_file(upload, record, module_hash, upgraded=attempt > 0)
            except PrepError:
                if preflight.check_module(self.client, self.request.canister_id) == module_hash:
                    raise
            now_hash = preflight.check_module(self.client, self.request.canister_id)
            if now_hash == module_hash:
                return module_hash
            self.progress.event("restart", **Restart(Why.UPGRADED_DURING).fields())
            module_hash = now_hash
        raise PrepError(
            f"canister {self.request.canister_id} kept changing its code during the upload",
            hint="wait until nobody upgrades it, then run prep upload again",
        )

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
            recipe=upload.recipe,
            bundle=upload.bundle,
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
                f"not uploading {total:,} bytes in {messages} message{'' if messages == 1 else 's'} to "
                "mainnet without confirmation",
                hint=f"pass --yes to confirm (it costs about {plan['estimated_cycles'] / 1e12:.3f} T cycles)",
            )

    # ---- one file -------------------------------------------------------------------------------

    def _upload_file(
        self, upload: UploadFile, wanted: FileRecord, module_hash: bytes, *, upgraded: bool
    ) -> None:
        """One file: settle what a killed run left in flight, decide whether the journal still holds,
        send what the canister lacks, prove it, run the role's steps."""
        role = self.profile.role(upload.role)
        journal = Journal(self._journal_path(upload.remote))
        wanted.module_hash = module_hash.hex()
        driver = self.mode.driver(self.session, role, upload.remote)
        if journal.record is not None:
            self.sender.settle_inflight(journal, driver)
        previous = journal.record
        restart = self._restart(previous, wanted, upgraded)
        if restart is None and previous is not None:
            restart = self.mode.contradiction(driver, previous, verify=self.request.verify)
        if restart is not None and restart.why in RESTORABLE and self._restorable(previous, wanted, role):
            assert isinstance(driver, AppendFile)
            restart = self._restore(journal, driver, wanted.size, wanted.module_hash, restart)
        if restart is not None:
            self._start_over(journal, wanted, restart, announce=previous is not None)
        assert journal.record is not None
        if upload.recipe is not None and (journal.record.recipe, journal.record.bundle) != (
            upload.recipe,
            upload.bundle,
        ):  # the same bytes, now named by another recipe or bundle: the journal tells the latest
            journal.update(FileRecord.record_origin, upload.recipe, upload.bundle)
        if not journal.record.bytes_complete:
            self._send(upload, journal, driver, restart)
        self._run_role_steps(journal, role)
        self.report.files.append(
            {"role": role.name, "remote": upload.remote, "size": wanted.size, "sha256": wanted.local_sha256}
        )

    def _send(
        self, upload: UploadFile, journal: Journal, driver: RemoteFile, restart: Restart | None
    ) -> None:
        reverify = restart is not None and self.mode.reverifies(restart)
        with LocalFile(upload.path) as local:
            self.mode.send(self.sender, journal, driver, local, resumed=restart is None, reverify=reverify)
        self._sent.add(upload.role)

    def _restart(self, previous: FileRecord | None, wanted: FileRecord, upgraded: bool) -> Restart | None:
        """Why the journal does not describe this upload any more (None: it does)."""
        if previous is None:
            return Restart(Why.NEW_UPLOAD)
        if self.request.restart and not upgraded:
            return Restart(Why.RESTART_REQUESTED)
        if upgraded:
            return Restart(Why.UPGRADED_DURING)
        if not previous.same_upload(wanted):
            return Restart(Why.FILE_CHANGED)
        if previous.module_hash != wanted.module_hash:
            return Restart(Why.UPGRADED_SINCE)
        return None

    def _start_over(self, journal: Journal, wanted: FileRecord, restart: Restart, *, announce: bool) -> None:
        if announce:
            action = "reverify" if self.mode.reverifies(restart) else "restart"
            self.progress.event("resume", role=wanted.role, action=action, **restart.fields())
        if restart.why is Why.VERIFY_REQUESTED:
            journal.update(FileRecord.reset_bytes)  # read back; the steps and the load stand if it matches
            return
        journal.start(FileRecord(**{**vars(wanted), "done": [], "inflight": {}}))

    def _restorable(self, previous: FileRecord | None, wanted: FileRecord, role: RoleProfile) -> bool:
        """Whether the journal vouches for a stable copy of this very file to restore the role from."""
        return previous is not None and previous.same_upload(wanted) and self._stored(previous, role)

    @staticmethod
    def _stored(record: FileRecord, role: RoleProfile) -> bool:
        """Whether the journal puts this file's bytes in stable memory: all sent, and the store step ran."""
        return role.stable is not None and record.bytes_complete and record.steps_done > role.stable.kept_by

    def _restore(
        self, journal: Journal, driver: AppendFile, size: int, module_hash: str | None, why: Restart
    ) -> Restart | None:
        """Reruns the role's restore step (after an upgrade, or before a step that uses the bytes up);
        None when the bytes are back in the heap, else why not.

        Proven: the restored buffer has the local file's length, and the journal shows this very file
        (its sha256 and size) was sent with each chunk acknowledged once, length-checked before the store
        step ran, and that the store step succeeded. Not proven: the stored bytes themselves (the canister
        has no hash query); the setup steps that follow parse them, which catches most corruption.
        """
        stable = driver.role.stable
        assert stable is not None
        self.progress.event("resume", role=driver.role.name, action="restore", **why.fields())
        journal.update(FileRecord.rewind_steps, stable.restore)
        try:
            self.sender.run_call(driver.role.after[stable.restore], role=driver.role.name, journal=journal)
        except (CanisterRefused, CallRejected) as err:
            return Restart(Why.STABLE_COPY_LOST, f"it could not be restored ({err})")
        held = driver.remote_length()
        if held != size:
            return Restart(Why.STABLE_COPY_LOST, f"it holds {held or 0:,} bytes, not {size:,}")
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
        journal = Journal(self._journal_path(self.remotes[name]))
        record = journal.record
        if record is None or record.inflight or not self._stored(record, role):
            return
        driver = AppendFile(self.session, role, record.remote)
        if driver.remote_length() == record.size:
            return
        why = self._restore(journal, driver, record.size, module_hash, Restart(Why.CONSUMED, step.method))
        if why is not None:
            journal.update(FileRecord.send_again)
            raise PrepError(
                f"{name} must be sent again: {why}",
                hint=f"run prep upload again with the {name} file too: it sends it once more",
            )
        self._run_role_steps(journal, role)

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
                journal.update(FileRecord.send_again)
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
        journal.update(FileRecord.send_again)
        raise PrepError(
            f"after {spec.method} canister {record.canister_id} holds {held or 0:,} bytes of {role.name}, "
            f"expected {expected:,}",
            hint="run prep upload again: it sends the file once more",
        )

    def _journals(self) -> dict[str, Journal]:
        """Every role's journal, for this run's files and for the earlier runs' of the other roles."""
        return {role: Journal(self._journal_path(remote)) for role, remote in self.remotes.items()}

    def _load(self, records: list[FileRecord], module_hash: bytes) -> bytes:
        """The kind's load steps. A step the canister refuses, after a run that took files the canister
        cannot show (no length query) from their journals, makes those files go again, once."""
        try:
            self._run_load_steps(module_hash)
            return module_hash
        except CanisterRefused as err:
            doubted = [r for r in self.profile.roles if r.name not in self._sent and self._unshowable(r)]
            if not doubted:
                raise
            restart = Restart(Why.STEP_REFUSED, err.message)
            for role in doubted:
                Journal(self._journal_path(self.remotes[role.name])).update(FileRecord.send_again)
                self.progress.event("resume", role=role.name, action="restart", **restart.fields())
            absent = [r.name for r in doubted if r.name not in {f.role for f in self.request.files}]
            if absent:
                names = ", ".join(absent)
                raise PrepError(
                    f"{err.message}; the canister does not hold what the journals of {names} say",
                    hint=f"run prep upload again with the {names} file(s) too: they are sent again",
                ) from err
        module_hash = self._upload_files(records, module_hash)
        self._run_load_steps(module_hash)
        return module_hash

    def _unshowable(self, role: RoleProfile) -> bool:
        """Whether the canister has no way to report this role's bytes (nothing to compare a journal with)."""
        return self.mode.view(self.mode.driver(self.session, role, self.remotes[role.name])) is None

    def _run_load_steps(self, module_hash: bytes) -> None:
        """The kind's steps once every role's file is in: this run's, or an earlier run's (per journal)."""
        journals = self._journals()
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

    def _record_views(self, module_hash: bytes) -> None:
        """Records what the canister reports about every complete file now that the run is over: the
        next run compares (see AddressingMode.contradiction) instead of taking the journal on trust."""
        for name, journal in self._journals().items():
            record = journal.record
            if record is None or not record.bytes_complete or record.inflight:
                continue
            if record.module_hash != module_hash.hex():
                continue
            view = self.mode.view(self.mode.driver(self.session, self.profile.role(name), record.remote))
            if view != record.canister_view:
                journal.update(FileRecord.record_view, view)
