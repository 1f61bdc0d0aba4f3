"""`prep status`: a fleet at a glance (module hash, subnet, cycles, memory, model files, readiness,
the recipe and bundle they came from), with the canisters that drift from the majority flagged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.ic_options import (
    AnonymousOption,
    CanistersOption,
    FleetOption,
    IdentityOption,
    NetworkOption,
    PemOption,
    UrlOption,
    canister_on,
)
from pipeline.cli.output import JsonFlag, Output

if TYPE_CHECKING:
    from pipeline.fleet.spec import FleetMember
    from pipeline.fleet.status import StatusTarget
    from pipeline.ic.client import IcClient


def status_command(
    canister: CanistersOption = None,
    fleet: FleetOption = None,
    network: NetworkOption = "local",
    url: UrlOption = None,
    pem: PemOption = None,
    identity: IdentityOption = None,
    anonymous: AnonymousOption = False,
    read_back: Annotated[
        bool,
        typer.Option(
            "--read-back",
            help="Read every byte of each llama_cpp model file back and hash it (proof whoever uploaded it).",
        ),
    ] = False,
    min_cycles: Annotated[
        str | None,
        typer.Option(
            "--min-cycles",
            metavar="CYCLES",
            help="Flag canisters below this balance (e.g. 2T). Default: per canister, its freezing "
            "reserve plus what uploading and loading its model files again costs.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Show every canister of a fleet side by side and flag drift: a module hash or model file that
    differs from the majority, a model not loaded, low cycles, an unreachable canister.

    Exit 0 when all agree and are well, 1 when anything drifts, 2 for bad input.

    Read-only: queries, read_state and (for a controller) canister_status.

    The upload journals (what was sent, from which recipe) come from $PREP_WORKDIR (default ./work).
    """
    from pipeline.fleet.drift import judge
    from pipeline.fleet.members import CommandLine, Signer, clients_for
    from pipeline.fleet.spec import fleet_of
    from pipeline.fleet.status import StatusOptions, collect_status, parse_cycles
    from pipeline.fleet.status_report import status_json, status_text
    from pipeline.workspace import Workspace

    threshold = parse_cycles(min_cycles) if min_cycles is not None else None
    chosen = fleet_of(canister or [], fleet)
    options = StatusOptions(Workspace.default().root, read_back=read_back, min_cycles=threshold)
    line = CommandLine(network, url, Signer(pem, identity, anonymous, default_anonymous=True))
    with clients_for(chosen) as clients:
        members = chosen.members
        targets = [_target(m, clients.for_member(m, line), _label(m, members, network)) for m in members]
        states = collect_status(targets, options)
    verdict = judge(states)
    Output(json=json_output).result(status_json(states, verdict), status_text(states, verdict))
    if verdict.exit_code:
        raise typer.Exit(verdict.exit_code)


def _target(member: FleetMember, client: IcClient, label: str) -> StatusTarget:
    """The member on its client (its own network and identity where the fleet file gives them)."""
    from pipeline.fleet.status import StatusTarget
    from pipeline.recipes import load_recipe
    from pipeline.targets.profile import load_profile

    canister_id = canister_on(client.network, member.canister)
    if member.recipe is None:
        return StatusTarget(label, canister_id, client)
    target = load_recipe(member.recipe).target
    return StatusTarget(label, canister_id, client, load_profile(target.kind), dict(target.files))


def _label(member: FleetMember, members: Sequence[FleetMember], network: str) -> str:
    """How the canister is named in the table: as given, with its network when it is listed twice."""
    twice = sum(m.canister == member.canister for m in members) > 1
    return f"{member.canister}@{member.network or network}" if twice else member.canister
