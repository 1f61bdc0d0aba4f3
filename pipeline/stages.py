"""`prep run`: fetch -> build -> upload -> load -> smoke for one recipe and one canister.

Every stage decides for itself whether there is work: fetch finds its files cached and verified, build
finds its manifest fresh, upload finds every byte acknowledged in its journal (and the canister agreeing),
load finds the same model loaded by the same code, smoke finds a passed answer recorded for the same
code and artifacts. So a rerun after success does nothing, and a rerun after an interruption continues
where the previous one stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from pipeline.build import BuildResult, build_recipe
from pipeline.errors import PrepError
from pipeline.events import EventSink
from pipeline.hub import FetchResult, fetch_recipe
from pipeline.ic.client import IcClient
from pipeline.manifest import Artifact
from pipeline.recipes import Recipe, TargetSpec
from pipeline.smoke import SmokeAnswer, request_for_recipe, smoke_canister
from pipeline.targets.profile import TargetProfile, load_profile
from pipeline.upload.budget import BudgetOptions
from pipeline.upload.engine import DEFAULT_WINDOW, UploadFile, UploadReport
from pipeline.upload.entry import UploadOptions, recipe_variables, run_upload
from pipeline.upload.flow import FlowControl
from pipeline.upload.progress import UploadProgress
from pipeline.workspace import Workspace, write_json_atomic

Confirm = Callable[[dict[str, Any]], bool]
SMOKE_STAGE = "smoke"


class StageFailed(PrepError):
    """A stage of `prep run` failed; the message names it, the exit code is the cause's."""

    def __init__(self, stage: str, cause: PrepError) -> None:
        super().__init__(f"{stage} failed: {cause.message}", hint=cause.hint)
        self.stage = stage
        self.exit_code = cause.exit_code


@dataclass(frozen=True)
class RunOptions:
    locked: bool = False
    strict_order: bool = False
    window: int = DEFAULT_WINDOW
    check_interface: bool = True
    progress: bool = True  # progress bars and notes on stderr
    budget: BudgetOptions = BudgetOptions()
    bundle: str | None = None  # the release bundle being deployed, for the upload journal
    flow: FlowControl | None = None  # shared by a subnet's canisters in a fleet (UploadRequest.flow)


@dataclass
class StageReport:
    stage: str
    status: str  # "ran", "resumed" or "skipped"
    seconds: float
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why the stage ran or was skipped


@dataclass
class RunReport:
    recipe: str
    kind: str
    network_url: str
    canister_id: str
    stages: list[StageReport] = field(default_factory=list)
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    smoke: SmokeAnswer | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["smoke"] = self.smoke.to_json() if self.smoke else None
        return data

    def summary(self) -> str:
        lines = [f"{self.recipe} -> {self.kind} canister {self.canister_id} at {self.network_url}"]
        for stage in self.stages:
            lines.append(
                f"  {stage.stage:<7} {stage.status:<8} {stage.seconds:7.2f} s  {stage.detail}"
                + (f"  ({stage.reason})" if stage.reason else "")
            )
        for role, item in sorted(self.artifacts.items()):
            lines.append(f"  {role}: {item['remote']}  {item['size']:,} B  sha256 {item['sha256']}")
        if self.smoke is not None:
            lines.append(f"  answer: {self.smoke.transcript()!r}")
        ran = [s.stage for s in self.stages if s.status != "skipped"]
        lines.append(
            f"done in {self.seconds:.1f} s; " + (f"ran {', '.join(ran)}" if ran else "nothing to do")
        )
        return "\n".join(lines)


def run_recipe(
    recipe: Recipe,
    client: IcClient,
    canister_id: str,
    workspace: Workspace,
    options: RunOptions | None = None,
    *,
    on_event: EventSink | None = None,
    confirm: Confirm | None = None,
) -> RunReport:
    """Runs every stage that has work to do; raises PrepError naming the stage that failed."""
    run = StagedRun(
        recipe.name, recipe.target, client, canister_id, workspace, options or RunOptions(), on_event, confirm
    )
    return run.run(lambda: run.fetch_and_build(recipe))


class StagedRun:
    """The stages of one run into one canister: first `prepare` (fetch and build, or check a release
    bundle) yields the artifacts, then upload, load and smoke, each reported and skipped when done."""

    def __init__(
        self,
        name: str,
        target: TargetSpec,
        client: IcClient,
        canister_id: str,
        workspace: Workspace,
        options: RunOptions,
        on_event: EventSink | None,
        confirm: Confirm | None,
    ) -> None:
        self.name = name
        self.target = target
        self.client = client
        self.canister_id = canister_id
        self.workspace = workspace
        self.options = options
        self.emit = on_event or (lambda _event: None)
        self.confirm = _ConfirmOnce(confirm)
        self.profile: TargetProfile = load_profile(target.kind)
        self.report = RunReport(name, self.profile.kind, client.network.url, canister_id)
        self.stage = ""

    def run(self, prepare: Callable[[], dict[str, Artifact]]) -> RunReport:
        started = time.monotonic()
        artifacts = prepare()
        files, uploaded = self.run_stage("upload", lambda: self._upload(self._upload_files(artifacts)))
        _, loaded = self.run_stage("load", lambda: self._load(files))
        fresh_canister = uploaded.status == "skipped" and loaded.status == "skipped"
        self.run_stage(SMOKE_STAGE, lambda: self._smoke(artifacts, fresh_canister))
        self.report.seconds = round(time.monotonic() - started, 3)
        return self.report

    def fetch_and_build(self, recipe: Recipe) -> dict[str, Artifact]:
        fetched, _ = self.run_stage("fetch", lambda: self._fetch(recipe))
        built, _ = self.run_stage("build", lambda: self._build(recipe, fetched))
        return built.artifacts

    def run_stage(self, name: str, work: Callable[[], tuple[Any, StageReport]]) -> tuple[Any, StageReport]:
        """Runs one stage; `work` returns its result and a `stage_report` (name and time filled in here)."""
        self.stage = name
        self.emit({"event": "stage", "stage": name, "status": "started"})
        started = time.monotonic()
        try:
            result, report = work()
        except PrepError as err:
            self.emit({"event": "stage", "stage": name, "status": "failed", "error": err.message})
            raise StageFailed(name, err) from err
        report.stage, report.seconds = name, round(time.monotonic() - started, 3)
        self.report.stages.append(report)
        self.emit({"event": "stage", **asdict(report)})
        return result, report

    def _tagged(self, event: dict[str, Any]) -> None:
        self.emit({**event, "stage": self.stage})

    # ---- fetch and build ------------------------------------------------------------------------

    def _fetch(self, recipe: Recipe) -> tuple[FetchResult, StageReport]:
        fetched = fetch_recipe(
            recipe,
            locked=self.options.locked,
            progress=self.options.progress,
            workspace=self.workspace,
            on_event=self._tagged,
        )
        downloaded = [f for f in fetched.files.values() if f.status != "cached"]
        total = sum(f.size for f in fetched.files.values())
        status = "ran" if downloaded else "skipped"
        detail = f"{_count(len(fetched.files), 'file')}, {total:,} B" + (
            f", {len(downloaded)} downloaded" if downloaded else ", all cached and verified"
        )
        data = {"files": len(fetched.files), "bytes": total, "downloaded": len(downloaded)}
        reason = (
            f"not in the cache: {', '.join(sorted(f.name for f in downloaded))}"
            if downloaded
            else "every file is cached and matches its sha256"
        )
        return fetched, stage_report(status, detail, data, reason)

    def _build(self, recipe: Recipe, fetched: FetchResult) -> tuple[BuildResult, StageReport]:
        built = build_recipe(recipe, fetched, self.workspace, on_event=self._tagged)
        total = sum(a.size for a in built.artifacts.values())
        detail = f"{_count(len(built.artifacts), 'artifact')}, {total:,} B"
        status = "skipped" if built.skipped else "ran"
        return built, stage_report(status, detail, {"bytes": total}, built.reason)

    def _upload_files(self, artifacts: dict[str, Artifact]) -> tuple[UploadFile, ...]:
        files = []
        for role in self.profile.roles:
            artifact = artifacts.get(role.name)
            if artifact is None:
                raise PrepError(
                    f"the build of {self.name} made no {role.name!r} file; "
                    f"a {self.profile.kind} canister needs one",
                    hint=f"roles of {self.profile.kind}: {', '.join(r.name for r in self.profile.roles)}",
                )
            remote = self.target.files.get(role.name, role.remote)
            files.append(
                UploadFile(role.name, artifact.path, remote, artifact.sha256, self.name, self.options.bundle)
            )
            self.report.artifacts[role.name] = {
                "path": str(artifact.path),
                "remote": remote,
                "size": artifact.size,
                "sha256": artifact.sha256,
            }
        return tuple(files)

    # ---- upload and load ------------------------------------------------------------------------

    def _upload(
        self, files: tuple[UploadFile, ...]
    ) -> tuple[tuple[UploadFile, ...], str, str, dict[str, Any]]:
        resumed: list[dict[str, Any]] = []
        report = self._engine(files, load=False, seen=resumed)
        rate = report.bytes_sent / report.seconds / 1e6 if report.bytes_sent and report.seconds else 0.0
        data = {
            "bytes_sent": report.bytes_sent,
            "chunks_sent": report.chunks_sent,
            "chunks_resent": report.chunks_resent,
            "steps": report.steps,
            "seconds": round(report.seconds, 3),
            "mb_per_s": round(rate, 3),
            "cycles": report.cycles,
        }
        if report.bytes_sent == 0 and not report.steps:
            why = "the journals and what the canister reports agree, same code"
            return files, stage_report("skipped", "every byte is in the canister", data, why)
        status = "resumed" if any(e.get("action") == "continue" for e in resumed) else "ran"
        detail = f"{report.bytes_sent:,} B in {_count(report.chunks_sent, 'chunk')}, {rate:.2f} MB/s"
        cycles = report.cycles
        if cycles and cycles["spent"] is not None:
            detail += f"; {cycles['spent'] / 1e12:.4f} T cycles (est. {cycles['estimated'] / 1e12:.4f} T)"
        if report.steps:
            detail += f"; then {', '.join(report.steps)}"
        return files, stage_report(status, detail, data, _upload_reason(resumed, report))

    def _load(self, files: tuple[UploadFile, ...]) -> tuple[None, StageReport]:
        report = self._engine(files, load=True, seen=[])
        probes = {s.method for s in self.profile.steps if s.probe}
        work = [s for s in report.steps if s not in probes]
        data = {"steps": report.steps}
        checks = ", ".join(sorted(probes & set(report.steps)))
        if not self.profile.steps:
            why = f"{self.profile.kind} sets its files up as they arrive (upload)"
            return None, stage_report("skipped", "no load steps", data, why)
        if not work:
            why = "loaded before by this code with these files and settings"
            return None, stage_report("skipped", f"{checks} ok" if checks else "loaded", data, why)
        why = "not loaded yet by this code with these files and settings"
        return None, stage_report("ran", ", ".join(report.steps), data, why)

    def _engine(
        self, files: tuple[UploadFile, ...], *, load: bool, seen: list[dict[str, Any]]
    ) -> UploadReport:
        def record(event: dict[str, Any]) -> None:
            if event.get("event") == "resume":
                seen.append(event)
            self._tagged(event)

        options = UploadOptions(
            workspace_root=self.workspace.root,
            strict_order=self.options.strict_order,
            window=self.options.window,
            check_interface=self.options.check_interface,
            load=load,
            budget=self.options.budget,
            flow=self.options.flow,
        )
        progress = UploadProgress(record, bar=None if self.options.progress else False)
        return run_upload(
            self.client,
            self.profile,
            self.canister_id,
            files,
            options,
            variables=recipe_variables(self.target),
            progress=progress,
            confirm=self.confirm,
        )

    # ---- smoke ----------------------------------------------------------------------------------

    def _smoke(self, artifacts: dict[str, Artifact], fresh_canister: bool) -> tuple[SmokeAnswer, StageReport]:
        request = request_for_recipe(self.target)
        module_hash = self.client.module_hash(self.canister_id)
        key = {
            "network_url": self.client.network.url,
            "canister_id": self.canister_id,
            "module_hash": module_hash.hex() if module_hash else None,
            "artifacts": {role: a.sha256 for role, a in sorted(artifacts.items())},
            "request": asdict(request),
        }
        path = self._smoke_record_path()
        previous = _read_record(path)
        if fresh_canister and previous is not None and previous.get("key") == key:
            answer = SmokeAnswer(**previous["answer"])
            self.report.smoke = answer
            why = "answered before by the same code, model and prompt"
            return answer, stage_report("skipped", _short(answer), {}, why)
        answer = smoke_canister(self.client, self.profile, self.canister_id, request, on_event=self._tagged)
        write_json_atomic(path, {"key": key, "answer": answer.to_json()})
        self.report.smoke = answer
        why = _smoke_reason(previous, key, fresh_canister)
        detail = f"{_short(answer)} matches {answer.expect!r}"
        return answer, stage_report("ran", detail, answer.to_json(), why)

    def _smoke_record_path(self) -> Path:
        host = quote(urlsplit(self.client.network.url).netloc or self.client.network.url, safe="")
        return self.workspace.stage_dir(self.name, SMOKE_STAGE) / f"{host}--{self.canister_id}.json"


class _ConfirmOnce:
    """Asks at most once per run: the load stage's plan repeats the upload's, already answered."""

    def __init__(self, confirm: Confirm | None) -> None:
        self.confirm = confirm
        self.approved = False

    def __call__(self, plan: dict[str, Any]) -> bool:
        if not self.approved and self.confirm is not None:
            self.approved = self.confirm(plan)
        return self.approved


def stage_report(status: str, detail: str, data: dict[str, Any], reason: str) -> StageReport:
    """What a stage's work returns to `StagedRun.run_stage`, which fills in its name and duration."""
    return StageReport("", status, 0.0, detail, data, reason)


def _upload_reason(resumed: list[dict[str, Any]], report: UploadReport) -> str:
    """Why the upload stage had work: the restart reasons per role, else what was left to do."""
    reasons = dict.fromkeys(f"{e['role']}: {e['reason']}" for e in resumed if e.get("reason"))
    if reasons:
        return "; ".join(reasons)
    if any(e.get("action") == "continue" for e in resumed):
        return "an earlier run was interrupted"
    return "new upload" if report.bytes_sent else "steps left to run"


def _smoke_reason(previous: dict[str, Any] | None, key: dict[str, Any], fresh_canister: bool) -> str:
    if previous is None:
        return "no answer recorded yet"
    if not fresh_canister:
        return "the upload or load stage changed the canister"
    changed = sorted(k for k in key if previous.get("key", {}).get(k) != key[k])
    return f"changed since the recorded answer: {', '.join(changed)}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _short(answer: SmokeAnswer, limit: int = 60) -> str:
    text = answer.text.strip().replace("\n", " ")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
