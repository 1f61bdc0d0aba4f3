"""Entry points of the upload stage: build an UploadRequest from a file or a recipe's artifacts, run it,
or show where an upload stands without sending anything."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError, UsageError
from pipeline.ic.client import IcClient
from pipeline.manifest import read_manifest
from pipeline.recipes import TargetSpec, load_recipe
from pipeline.targets.interface import fit_to_canister
from pipeline.targets.profile import TargetProfile, load_profile, remote_name_problem
from pipeline.targets.session import TargetSession
from pipeline.upload.budget import BudgetOptions, explain_out_of_cycles
from pipeline.upload.engine import UploadEngine
from pipeline.upload.flow import FlowControl
from pipeline.upload.journal import Journal, journal_path
from pipeline.upload.mode import mode_for
from pipeline.upload.progress import UploadProgress
from pipeline.upload.request import DEFAULT_WINDOW, UploadFile, UploadReport, UploadRequest
from pipeline.workspace import Workspace

BUILD_STAGE = "build"


@dataclass(frozen=True)
class UploadOptions:
    workspace_root: Path
    strict_order: bool = False
    window: int = DEFAULT_WINDOW
    check_interface: bool = True
    load: bool = True
    budget: BudgetOptions = BudgetOptions()
    wait_for_lock: bool = False
    validate: bool = True
    restart: bool = False
    verify: bool = False
    flow: FlowControl | None = None  # shared by a subnet's canisters in a fleet (UploadRequest.flow)


def adhoc_files(profile: TargetProfile, path: Path, remote: str | None) -> tuple[UploadFile, ...]:
    """One file without a recipe. Offset kinds: `remote` is the file name in the canister (default:
    the profile's); append kinds: `remote` names the role (e.g. safetensors)."""
    if not path.is_file():
        raise UsageError(
            f"--file {path}: " + ("a folder, not a file" if path.is_dir() else "no such file"),
            hint="give one file; a recipe (prep upload RECIPE) uploads all of a build's files",
        )
    profile.upload_roles()
    problem = None if remote is None else remote_name_problem(remote)
    if problem is not None:
        raise UsageError(f"--remote {remote!r}: {problem}", hint=f"e.g. --remote {profile.roles[0].remote}")
    if mode_for(profile).remote_names_role:
        names = [r.name for r in profile.roles]
        if remote is None and len(names) > 1:
            raise UsageError(
                f"--remote is needed for a {profile.kind} canister: which role is {path.name}?",
                hint=f"roles: {', '.join(names)}",
            )
        role = profile.role(remote or names[0])
        return (UploadFile(role.name, path, role.remote),)
    role = profile.roles[0]
    return (UploadFile(role.name, path, remote or role.remote),)


def recipe_files(
    name_or_path: str, workspace: Workspace
) -> tuple[TargetProfile, tuple[UploadFile, ...], dict[str, Any]]:
    """The kind, the built files (from the build stage's manifest) and the load settings of a recipe."""
    recipe = load_recipe(name_or_path)
    profile = load_profile(recipe.target.kind)
    stage_dir = workspace.stage_dir(recipe.name, BUILD_STAGE)
    manifest = read_manifest(stage_dir)
    if manifest is None:
        raise PrepError(
            f"recipe {recipe.name} has no build in {stage_dir}",
            hint=f"run prep build {recipe.name} first",
        )
    artifacts = manifest.artifacts(stage_dir)
    files = []
    for role in profile.roles:
        if role.name not in artifacts:
            raise PrepError(
                f"the build of {recipe.name} in {stage_dir} has no {role.name!r} file for {profile.kind}",
                hint=f"run prep build {recipe.name} again",
            )
        artifact = artifacts[role.name]
        remote = recipe.target.files.get(role.name, role.remote)
        files.append(UploadFile(role.name, artifact.path, remote, artifact.sha256, recipe=recipe.name))
    return profile, tuple(files), recipe_variables(recipe.target)


def recipe_variables(target: TargetSpec) -> dict[str, Any]:
    """Template variables from a recipe's TargetSpec: load args and max tokens."""
    variables: dict[str, Any] = {}
    if target.load_args:
        variables["load_args"] = list(target.load_args)
    for name in ("max_tokens_update", "max_tokens_query"):
        value = getattr(target, name, None)
        if value is not None:
            variables[name] = value
    return variables


def run_upload(
    client: IcClient,
    profile: TargetProfile,
    canister_id: str,
    files: tuple[UploadFile, ...],
    options: UploadOptions,
    *,
    variables: dict[str, Any] | None = None,
    progress: UploadProgress | None = None,
    confirm: Callable[[dict[str, Any]], bool] | None = None,
) -> UploadReport:
    """Uploads `files`; the load steps run once every role of the kind is in (this run or an earlier one)."""
    request = UploadRequest(
        profile=profile,
        canister_id=canister_id,
        files=files,
        workspace_root=options.workspace_root,
        variables=variables or {},
        strict_order=options.strict_order,
        window=options.window,
        check_interface=options.check_interface,
        run_steps=options.load,
        budget=options.budget,
        wait_for_lock=options.wait_for_lock,
        validate=options.validate,
        restart=options.restart,
        verify=options.verify,
        flow=options.flow,
    )
    with explain_out_of_cycles(canister_id):
        return UploadEngine(client, request, progress, confirm).run()


def upload_status(
    client: IcClient,
    profile: TargetProfile,
    canister_id: str,
    workspace_root: Path,
    remotes: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Per role: what the journal says and what the canister holds (queries and read_state only)."""
    profile = fit_to_canister(client, canister_id, profile)  # older releases: their fallbacks
    session = TargetSession(client, canister_id, profile, {"principal": client.principal})
    mode = mode_for(profile)
    module_hash = client.module_hash(canister_id)
    rows = []
    for role in profile.roles:
        remote = (remotes or {}).get(role.name, role.remote)
        journal = Journal(journal_path(workspace_root, client.network.url, canister_id, remote))
        record = journal.record
        driver = mode.driver(session, role, remote)
        row: dict[str, Any] = {"role": role.name, "remote": remote, "journal": str(journal.path)}
        if record is not None:
            row.update(
                size=record.size,
                local_sha256=record.local_sha256,
                bytes_complete=record.bytes_complete,
                in_flight=len(record.inflight),
                same_code=record.module_hash == (module_hash.hex() if module_hash else None),
                recorded_view=record.canister_view,
            )
        try:
            row.update(mode.status_row(driver, record))
            if record is not None and record.canister_view is not None:
                row["canister_agrees"] = not record.view_differs(row["canister_view"])
        except PrepError as err:
            row["canister_error"] = str(err)
        rows.append(row)
    return rows
