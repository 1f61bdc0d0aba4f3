"""Deploy a release bundle (dist/<recipe>/ from `prep release`) into a canister: exactly its bytes.

`open_bundle` verifies the bundle as `prep verify` does (every file listed in SHA256SUMS with its
sha256, manifest.json consistent with it, nothing missing or extra, artifacts structurally valid) and
only then reads from the manifest what goes where: the canister kind, each artifact's role and remote
name, the load arguments and the smoke prompt. `deploy_bundle` runs the usual stages on those
artifacts (upload, load, smoke), with the verification as the first stage instead of fetch and build.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError
from pipeline.events import EventSink
from pipeline.ic.client import IcClient
from pipeline.manifest import Artifact
from pipeline.recipes import SmokeSpec, TargetSpec
from pipeline.release import MANIFEST_NAME, verify_bundle
from pipeline.stages import RunOptions, RunReport, StagedRun, StageReport, stage_report
from pipeline.targets.profile import load_profile
from pipeline.workspace import Workspace

Confirm = Callable[[dict[str, Any]], bool]
VERIFY_STAGE = "verify"


@dataclass(frozen=True)
class DeployBundle:
    """A verified bundle: what to upload (in the bundle folder) and how the canister is to load it."""

    path: Path
    recipe: str
    target: TargetSpec
    artifacts: dict[str, Artifact]  # role -> the file in the bundle
    files: int  # every file of the bundle, manifest and SHA256SUMS aside
    bytes: int
    seconds: float  # spent verifying
    built_by: dict[str, Any] | None  # the CI run that made it, when the manifest records one

    def file_of(self, role: str) -> str:
        return self.artifacts[role].path.name


def open_bundle(path: Path) -> DeployBundle:
    """Verifies the bundle (raising PrepError naming every problem) and reads its deployment plan."""
    started = time.monotonic()
    report = verify_bundle(path)
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    try:
        target, artifacts = _plan(path, manifest)
    except (KeyError, TypeError, ValueError) as err:
        raise PrepError(
            f"{path / MANIFEST_NAME}: its target or artifacts cannot be read ({type(err).__name__}: {err})",
            hint="rebuild the bundle with prep release",
        ) from err
    profile = load_profile(target.kind)
    missing = [role.name for role in profile.roles if role.name not in artifacts]
    if missing:
        raise PrepError(
            f"{path} has no {', '.join(missing)} file, which a {target.kind} canister needs",
            hint=f"roles of {target.kind}: {', '.join(r.name for r in profile.roles)}",
        )
    return DeployBundle(
        path=path,
        recipe=report.recipe,
        target=target,
        artifacts=artifacts,
        files=len(report.files),
        bytes=sum(f.size for f in report.files),
        seconds=round(time.monotonic() - started, 3),
        built_by=report.built_by,
    )


def _plan(path: Path, manifest: dict[str, Any]) -> tuple[TargetSpec, dict[str, Artifact]]:
    spec = manifest["target"]
    artifacts = {
        str(a["role"]): Artifact(str(a["role"]), path / str(a["file"]), int(a["size"]), str(a["sha256"]))
        for a in manifest["artifacts"]
    }
    remotes = {str(a["role"]): str(a["remote"]) for a in manifest["artifacts"]}
    declared = {str(role): str(remote) for role, remote in dict(spec["files"]).items()}
    for role, remote in declared.items():
        if remotes.get(role, remote) != remote:
            raise ValueError(f"target.files says {role} goes to {remote}, its artifact says {remotes[role]}")
    smoke = dict(spec["smoke"])
    target = TargetSpec(
        kind=str(spec["kind"]),
        files=remotes,
        load_args=tuple(str(a) for a in spec["load_args"]),
        max_tokens_update=_optional_int(spec.get("max_tokens_update")),
        max_tokens_query=_optional_int(spec.get("max_tokens_query")),
        smoke=SmokeSpec(str(smoke["prompt"]), int(smoke["max_tokens"]), str(smoke["expect"])),
    )
    return target, artifacts


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def deploy_bundle(
    bundle: DeployBundle,
    client: IcClient,
    canister_id: str,
    workspace: Workspace,
    options: RunOptions | None = None,
    *,
    on_event: EventSink | None = None,
    confirm: Confirm | None = None,
) -> RunReport:
    """Uploads the bundle's artifacts under its remote names, loads them and runs its smoke test."""
    run = StagedRun(
        bundle.recipe,
        bundle.target,
        client,
        canister_id,
        workspace,
        replace(options or RunOptions(), bundle=str(bundle.path.resolve())),
        on_event,
        confirm,
    )

    def verified() -> tuple[dict[str, Artifact], StageReport]:
        detail = (
            f"{bundle.path}: {bundle.files} files, {bundle.bytes:,} B, every sha256 as in SHA256SUMS "
            f"and manifest.json ({bundle.seconds:.2f} s)"
        )
        data = {"bundle": str(bundle.path), "files": bundle.files, "bytes": bundle.bytes}
        return bundle.artifacts, stage_report("ran", detail, data, "a bundle is checked on every deploy")

    return run.run(lambda: run.run_stage(VERIFY_STAGE, verified)[0])
