"""Checks before the first byte: is it the canister kind we think, may we upload, will the file work."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pipeline.errors import PrepError
from pipeline.fit import check_fit
from pipeline.formats.validate import validate_file
from pipeline.ic.client import IcClient
from pipeline.ic.errors import CallRejected
from pipeline.manifest import Artifact
from pipeline.targets.calls import CanisterRefused
from pipeline.targets.interface import fit_to_canister
from pipeline.targets.profile import TargetProfile
from pipeline.targets.session import TargetSession


def check_interface(client: IcClient, canister_id: str, profile: TargetProfile) -> TargetProfile:
    """The live candid:service must fit the profile under Candid subtyping (pipeline.targets.interface);
    returns the profile to drive it with (fallbacks for the optional methods it lacks)."""
    return fit_to_canister(client, canister_id, profile, required=True)


def check_module(client: IcClient, canister_id: str) -> bytes:
    module_hash = client.module_hash(canister_id)
    if module_hash is None:
        raise PrepError(
            f"canister {canister_id} has no code installed",
            hint="install the canister's wasm first (dfx deploy / icp deploy)",
        )
    return module_hash


def check_access(session: TargetSession) -> None:
    """The identity must be a controller, or approved by the kind's access query."""
    profile, principal = session.profile, session.client.principal
    rule = profile.access
    if rule.controllers:
        controllers = session.client.controllers(session.canister_id) or []
        if principal in controllers:
            return
    if rule.check is not None:
        try:
            if session.is_query(rule.check):
                answer = session.query(rule.check)
            else:
                answer = session.interpret(rule.check, session.client.call(
                    session.canister_id, rule.check.method, session.args(rule.check)))  # fmt: skip
        except (CanisterRefused, CallRejected):
            answer = False
        if answer is not False:
            return
    raise PrepError(
        f"identity {principal} may not upload to {profile.kind} canister {session.canister_id}: "
        + ("it is not a controller" if rule.controllers else "not authorised")
        + (f" and {rule.check.method} refuses it" if rule.check else ""),
        hint="use a controller's identity (--pem / --identity), or have a controller add this principal",
    )


def check_formats(profile: TargetProfile, files: Sequence[tuple[str, Path]]) -> dict[str, str]:
    """Each (role, path) must be in the format its role names (what the canister's loader reads);
    returns a summary per role. UsageError (exit 2) for a file the canister would reject."""
    summaries = {}
    for role_name, path in files:
        role = profile.role(role_name)
        summaries[role_name] = validate_file(path, role.format, role=role_name, kind=profile.kind)
    return summaries


def check_files(profile: TargetProfile, files: Sequence[tuple[str, Path, int]]) -> None:
    """Each (role, path, size) must fit the kind's limits (size per load, GGUF architecture, heap).

    Runs before the files are hashed, so their artifacts carry no sha256 yet.
    """
    artifacts = {role: Artifact(role, path, size, sha256="") for role, path, size in files}
    check_fit(profile.kind, artifacts, profile=profile)
