"""`prep verify`: re-check a release bundle (sizes, sha256s, manifest against SHA256SUMS); with
`--canister`, also prove that a deployed canister holds exactly the bundle's bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.ic_options import (
    AnonymousOption,
    CanisterOption,
    IdentityOption,
    NetworkOption,
    PemOption,
    UrlOption,
    canister_on,
    choose_identity,
    connect,
)
from pipeline.cli.output import JsonFlag, Output
from pipeline.errors import PrepError


def verify_command(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by prep release, e.g. dist/NAME.")],
    network: NetworkOption = "local",
    canister: CanisterOption = "",
    url: UrlOption = None,
    pem: PemOption = None,
    identity: IdentityOption = None,
    anonymous: AnonymousOption = False,
    no_interface_check: Annotated[
        bool, typer.Option("--no-interface-check", help="Skip comparing the canister's candid:service.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Check every file of a release bundle; with --canister, prove the canister holds those bytes.

    Exit 1 naming each file that is missing, extra or changed (in the bundle or in the canister).
    """
    from pipeline.release import verify_bundle

    out = Output(json=json_output)
    if not canister:
        report = verify_bundle(bundle)
        total = sum(f.size for f in report.files)
        built = report.built_by or {}
        origin = (
            f"\nbuilt by {built.get('run_url', built.get('service'))} at commit {built.get('commit', '?')} "
            "(check its attestation: gh attestation verify RECIPE.tar.gz --repo OWNER/REPO)"
            if built
            else ""
        )
        out.result(
            {"ok": True, **report.to_json()},
            f"{bundle}: OK, {len(report.files)} files, {total:,} B ({report.recipe} for {report.kind})"
            + origin,
        )
        return
    from pipeline.canister_verify import verify_canister
    from pipeline.deploy import open_bundle
    from pipeline.workspace import Workspace

    opened = open_bundle(bundle)
    with connect(network, url, choose_identity(pem, identity, anonymous)) as client:
        canister_id = canister_on(client.network, canister)
        root = Workspace.default().root
        proof = verify_canister(opened, client, canister_id, root, check_interface=not no_interface_check)
    out.result(proof.to_json(), proof.describe())
    if not proof.ok:
        raise PrepError(
            f"canister {proof.canister_id} does not hold exactly {bundle}:\n  " + "\n  ".join(proof.problems),
            hint="deploy the bundle again: prep upload --bundle " + str(bundle),
        )
