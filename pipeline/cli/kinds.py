"""`prep kinds`: the canister kinds prep knows, and which of them fit a Candid interface."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.output import JsonFlag, Output

if TYPE_CHECKING:
    from pipeline.targets.interface import KindFit
    from pipeline.targets.profile import TargetProfile

kinds_app = typer.Typer(
    help="Canister kinds: list them, check a canister's Candid against them.", no_args_is_help=True
)

KindOption = Annotated[
    str | None,
    typer.Option("--kind", help="Check only this kind (a name, or a folder path such as ./my_kind)."),
]


@kinds_app.command("list")
def list_command(json_output: JsonFlag = False) -> None:
    """Every known kind: what it is, the files it takes and its smoke dialogue."""
    from pipeline.targets.profile import known_kinds, load_profile

    profiles = [load_profile(kind) for kind in known_kinds()]
    rows = [_summary(p) for p in profiles]
    human = "\n".join(
        f"{r['kind']:<12} {r['description']}\n"
        f"{'':<12} files: {', '.join(r['roles']) or 'none (smoke only)'}; smoke: {r['smoke'] or 'none'}"
        for r in rows
    )
    Output(json=json_output).result({"kinds": rows}, human)


@kinds_app.command("check")
def check_command(
    did: Annotated[Path, typer.Argument(help="A Candid file: the interface of a canister build.")],
    kind: KindOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Can prep drive a canister with this Candid interface? Per kind: yes, or exactly why not.

    Decided by Candid subtyping (replies may carry more fields or lack optional ones, ...).
    Exit 0 when the kind (or, without --kind, any kind) fits, 1 otherwise.
    """
    from pipeline.errors import UsageError
    from pipeline.ic.candid import CandidError, parse_service
    from pipeline.targets.interface import fit_kind
    from pipeline.targets.profile import known_kinds, load_profile

    try:
        text = did.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {did}: {err}", hint="give the path of a .did file") from err
    try:
        live = parse_service(text, str(did))
    except CandidError as err:
        raise UsageError(err.message, hint="give a Candid service description (.did)") from err
    if not live.methods:
        raise UsageError(f"{did} declares no service methods", hint="give the .did of a canister's service")
    fits = [fit_kind(load_profile(k), live) for k in ([kind] if kind else known_kinds())]
    out = Output(json=json_output)
    out.result({"file": str(did), "kinds": [f.to_dict() for f in fits]}, _human(did, fits, every=bool(kind)))
    if not any(f.matches for f in fits):
        raise typer.Exit(1)


def _human(did: Path, fits: list[KindFit], *, every: bool) -> str:
    """Per kind: fits (and the fallbacks it needs), or why not (all reasons with --kind, else three)."""
    lines = []
    for fit in fits:
        if fit.matches:
            lines.append(f"{fit.kind}: fits {did}")
            lines += [f"  {line}" for line in (*fit.fallbacks, *fit.notes)]
        else:
            lines.append(f"{fit.kind}: does not fit {did}")
            shown = fit.problems if every else fit.problems[:3]
            lines += [f"  {problem}" for problem in shown]
            if len(shown) < len(fit.problems):
                lines.append(f"  ... and {len(fit.problems) - len(shown)} more (--kind {fit.kind} lists all)")
    return "\n".join(lines)


def _summary(profile: TargetProfile) -> dict[str, object]:
    return {
        "kind": profile.kind,
        "description": profile.description,
        "roles": [role.name for role in profile.roles],
        "smoke": profile.smoke.name if profile.smoke else None,
        "directory": str(profile.directory),
    }
