"""What `prep upload|run|smoke` share when they work on a fleet (--canister repeated, or --fleet FILE):
choosing single or fleet mode, the live view, the one mainnet question, the summary, the exit code and
the command that retries the canisters that failed."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli.output import Output
from pipeline.errors import PrepError, UsageError

if TYPE_CHECKING:
    from pipeline.fleet.members import FleetTarget
    from pipeline.fleet.scheduler import Work
    from pipeline.fleet.spec import Fleet

OnlyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--only",
        metavar="ID_OR_NAME",
        help="With --fleet: only these canisters of the file (name or id as listed; repeatable).",
    ),
]


def chosen_fleet(canisters: list[str] | None, fleet_file: Path | None, only: list[str] | None) -> Fleet:
    """The canisters the options name; refuses --only without --fleet."""
    from pipeline.fleet.spec import fleet_of

    fleet = fleet_of(canisters or [], fleet_file)
    if only and fleet.path is None:
        raise UsageError("--only picks canisters of a --fleet file", hint="with --canister, list just those")
    return fleet


def is_single(fleet: Fleet) -> bool:
    """One --canister: the single-canister command, output unchanged."""
    return fleet.path is None and len(fleet.members) == 1


def run_fleet_command(
    ctx: typer.Context,
    fleet: Fleet,
    make_work: Callable[[list[FleetTarget]], Work],
    *,
    network: str,
    url: str | None,
    signer: tuple[Path | None, str | None, bool],
    only: list[str] | None,
    window: int,
    out: Output,
    yes: bool,
) -> None:
    """Resolves the fleet, runs `make_work(targets)` on every canister, prints the summary; exit 1 (with
    the failed canisters, their reasons and the retry command) unless every canister succeeded."""
    from pipeline.fleet.live import FleetView
    from pipeline.fleet.members import CommandLine, Signer, clients_for, resolve_fleet
    from pipeline.fleet.scheduler import run_fleet
    from pipeline.upload.memory import share_arenas_across_a_fleet

    share_arenas_across_a_fleet()  # the command owns the process: it decides, as for keep_chunk_buffers
    line = CommandLine(network, url, Signer(*signer))
    with clients_for(fleet) as clients:
        targets, unreachable = resolve_fleet(fleet, line, clients, only or ())
        work = make_work(targets)
        view = None if out.json else FleetView(targets)
        report = run_fleet(
            targets,
            unreachable,
            work,
            window=window,
            on_event=view or out.event,
            ask=fleet_confirmation(out, yes),
        )
        if view is not None:
            view.close()
    failed = [row.canister for row in report.failed]
    retry = retry_command(ctx, failed, from_file=fleet.path is not None) if failed else None
    out.result(report.to_json() | {"retry_command": retry}, report.table())
    if failed:
        for row in report.failed:
            out.info(f"failed: {row.canister}: {row.reason}")
        if all(row.bad_input for row in report.failed):
            # The same bad input (a file, an option) fails every canister: a retry cannot help.
            raise UsageError(report.failed[0].reason, hint="fix it and run the same command again")
        raise PrepError(
            f"{len(failed)} of {len(report.rows)} canisters failed: {', '.join(failed)}",
            hint=f"fix the reasons above, then retry just those: {retry}",
        )


def fleet_confirmation(out: Output, yes: bool) -> Callable[[dict[str, Any]], bool]:
    """The one question before a fleet's mainnet uploads (`totals` from pipeline.fleet.confirm)."""

    def ask(totals: dict[str, Any]) -> bool:
        if yes:
            return True
        out.info(
            f"mainnet: {totals['bytes']:,} bytes in {totals['messages']} messages to {totals['canisters']} "
            f"{'/'.join(totals['kinds'])} canisters cost about {totals['estimated_cycles'] / 1e12:.3f} T "
            "cycles in all"
        )
        if not sys.stdin.isatty():
            return False
        return typer.confirm("Upload to all of them?", default=False, err=True)

    return ask


def retry_command(ctx: typer.Context, failed: list[str], *, from_file: bool) -> str:
    """This very command for the failed canisters only: `--only` each with a fleet file (its per-canister
    settings stay), else `--canister` each; every other option as given (read back from the parsed
    parameters: click keeps no copy of the words typed)."""
    words = ctx.command_path.split()
    options: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name or "")
        if param.name in ("canister", "only") or value is None or value == param.default:
            continue
        if param.param_type_name == "argument":
            words.append(str(value))
        elif getattr(param, "is_flag", False):
            options.append(param.opts[0])  # a flag differs from its default (False) only when given
        elif param.multiple:
            for item in value:
                options += [param.opts[0], str(item)]
        else:
            options += [param.opts[0], str(value)]
    for name in failed:
        options += ["--only" if from_file else "--canister", name]
    return shlex.join([*words, *options])
