"""`prep status`: a fleet at a glance (module hash, subnet, cycles, memory, model files, readiness,
the recipe and bundle they came from), with the canisters that drift from the majority flagged."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
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
    choose_identity,
    connect,
)
from pipeline.cli.output import JsonFlag, Output

if TYPE_CHECKING:
    from pipeline.fleet.spec import FleetMember
    from pipeline.fleet.status import StatusTarget


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
    from pipeline.fleet.spec import fleet_of
    from pipeline.fleet.status import StatusOptions, collect_status, parse_cycles
    from pipeline.fleet.status_report import status_json, status_text
    from pipeline.workspace import Workspace

    threshold = parse_cycles(min_cycles) if min_cycles is not None else None
    members = fleet_of(canister or [], fleet).members
    options = StatusOptions(Workspace.default().root, read_back=read_back, min_cycles=threshold)
    with ExitStack() as clients:
        signer = (pem, identity, anonymous)
        targets = [_target(m, network, url, signer, clients, _label(m, members, network)) for m in members]
        states = collect_status(targets, options)
    verdict = judge(states)
    Output(json=json_output).result(status_json(states, verdict), status_text(states, verdict))
    if verdict.exit_code:
        raise typer.Exit(verdict.exit_code)


def _target(
    member: FleetMember,
    network: str,
    url: str | None,
    signer: tuple[Path | None, str | None, bool],
    clients: ExitStack,
    label: str,
) -> StatusTarget:
    """The member's own network and identity where the fleet file gives them, else the command line's."""
    from pipeline.fleet.status import StatusTarget
    from pipeline.recipes import load_recipe
    from pipeline.targets.profile import load_profile

    pem, identity, anonymous = signer
    if member.pem is not None or member.identity is not None:
        who = choose_identity(member.pem, member.identity, False)
    else:
        who = choose_identity(pem, identity, anonymous, default_anonymous=True)
    own_network = member.network is not None
    client = clients.enter_context(connect(member.network or network, None if own_network else url, who))
    canister_id = canister_on(client.network, member.canister)
    if member.recipe is None:
        return StatusTarget(label, canister_id, client)
    target = load_recipe(member.recipe).target
    return StatusTarget(label, canister_id, client, load_profile(target.kind), dict(target.files))


def _label(member: FleetMember, members: Sequence[FleetMember], network: str) -> str:
    """How the canister is named in the table: as given, with its network when it is listed twice."""
    twice = sum(m.canister == member.canister for m in members) > 1
    return f"{member.canister}@{member.network or network}" if twice else member.canister
