"""The work each fleet command does for one canister: upload (and load), run (upload, load, smoke after
one fetch and build per recipe), or smoke. Each is the single-canister code path, given the subnet's
flow controller, the fleet's mainnet question and an event sink that names the canister."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from pipeline.errors import PrepError, UsageError
from pipeline.fleet.members import FleetTarget
from pipeline.fleet.scheduler import Assignment, Work
from pipeline.fleet.spec import FleetMember
from pipeline.manifest import Artifact
from pipeline.recipes import Recipe, TargetSpec
from pipeline.smoke import SmokeRequest, smoke_canister
from pipeline.stages import RunOptions, StagedRun
from pipeline.targets.profile import TargetProfile
from pipeline.upload.entry import UploadOptions, recipe_files, run_upload
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import UploadFile
from pipeline.workspace import Workspace

UploadPlan = tuple[TargetProfile, tuple[UploadFile, ...], dict[str, Any]]  # as entry.recipe_files returns


def with_overrides(target: TargetSpec, member: FleetMember) -> TargetSpec:
    """The recipe's [target] with this canister's own load_args / max_tokens (FleetMember.target)."""
    return replace(target, **member.target) if member.target else target


def variables_with_overrides(variables: dict[str, Any], member: FleetMember) -> dict[str, Any]:
    """Load variables (entry.recipe_variables) with this canister's overrides."""
    own = {k: list(v) if k == "load_args" else v for k, v in member.target.items()}
    return {**variables, **own}


def upload_job(plan_of: Callable[[FleetMember], UploadPlan], options: UploadOptions) -> Work:
    def work(target: FleetTarget, job: Assignment) -> None:
        profile, files, variables = plan_of(target.member)
        sent = 0

        def counted(event: dict[str, Any]) -> None:
            # A failed upload returns no report: its row still says what this run sent before it failed.
            nonlocal sent
            if event["event"] == "chunk":
                sent += event["bytes"]
            job.emit(event)

        try:
            report = run_upload(
                target.client,
                profile,
                target.canister_id,
                files,
                replace(options, flow=job.flow, window=min(options.window, job.read_window)),
                variables=variables_with_overrides(variables, target.member),
                progress=UploadProgress(counted, bar=False),  # its events come one at a time
                confirm=job.confirm,
            )
        except PrepError:
            job.row.bytes_sent = sent
            raise
        job.row.add_upload(report)

    return work


def smoke_job(request_of: Callable[[FleetMember], tuple[TargetProfile, SmokeRequest]]) -> Work:
    def work(target: FleetTarget, job: Assignment) -> None:
        profile, request = request_of(target.member)
        answer = smoke_canister(target.client, profile, target.canister_id, request, on_event=job.emit)
        job.row.add_answer(answer)

    return work


def run_job(
    recipe_of: Callable[[FleetMember], Recipe],
    artifacts_of: Callable[[Recipe], dict[str, Artifact]],
    workspace: Workspace,
    options: RunOptions,
) -> Work:
    """`artifacts_of(recipe)` is the one fetch and build of that recipe (done before the fleet starts)."""

    def work(target: FleetTarget, job: Assignment) -> None:
        recipe = recipe_of(target.member)
        artifacts = artifacts_of(recipe)
        run = StagedRun(
            recipe.name,
            with_overrides(recipe.target, target.member),
            target.client,
            target.canister_id,
            workspace,
            replace(options, flow=job.flow, window=min(options.window, job.read_window), progress=False),
            job.emit,
            job.confirm,
        )
        report = run.run(lambda: artifacts)
        for stage in report.stages:
            if stage.stage == "upload":
                data = stage.data
                job.row.bytes_sent += data["bytes_sent"]
                job.row.upload_seconds += data["seconds"]
                spent = (data.get("cycles") or {}).get("spent")
                job.row.cycles_spent = spent
            job.row.steps += [s for s in stage.data.get("steps", []) if s not in job.row.steps]
        job.row.files = [
            {"role": role, "remote": a["remote"], "size": a["size"], "sha256": a["sha256"]}
            for role, a in sorted(report.artifacts.items())
        ]
        if report.smoke is not None:
            job.row.add_answer(report.smoke)

    return work


def recipe_name_for(member: FleetMember, default: str | None) -> str:
    """The member's own recipe, else the command line's."""
    name = member.recipe or default
    if name is None:
        raise UsageError(
            f"canister {member.canister} has no recipe",
            hint="give RECIPE on the command line, or `recipe = ...` in the fleet file",
        )
    return name


def recipe_upload_plans(
    members: Sequence[FleetMember], default: str | None, workspace: Workspace
) -> Callable[[FleetMember], UploadPlan]:
    """Each member's recipe's built files, read once per recipe before any canister starts."""
    plans: dict[str, UploadPlan] = {}
    for member in members:
        name = recipe_name_for(member, default)
        if name not in plans:
            plans[name] = recipe_files(name, workspace)
    return lambda member: plans[recipe_name_for(member, default)]
