"""`prep canister info`: what a live canister is and whether prep knows how to fill it."""

from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from pipeline.ic.canister_info import CanisterInfo

canister_app = typer.Typer(help="Look at live canisters.", no_args_is_help=True)


@canister_app.command("info")
def info_command(
    canister: CanisterOption,
    network: NetworkOption = "local",
    url: UrlOption = None,
    pem: PemOption = None,
    identity: IdentityOption = None,
    anonymous: AnonymousOption = False,
    json_output: JsonFlag = False,
) -> None:
    """Module hash, controllers, subnet, matching canister kinds (from its candid:service) and readiness;
    for a controller also cycles, memory, wasm_memory_limit and freezing threshold."""
    from pipeline.ic.canister_info import inspect_canister
    from pipeline.targets.interface import fit_known_kinds

    who = choose_identity(pem, identity, anonymous, default_anonymous=True)
    with connect(network, url, who) as client:
        info = inspect_canister(client, canister_on(client.network, canister), fit_known_kinds)
    Output(json=json_output).result(info.to_dict(), _human(info))


def _status_lines(info: CanisterInfo) -> list[str]:
    status = info.status
    if status is None:
        return ["cycles       not readable: only a controller may read canister_status (use --pem)"]
    limit = f"{status.wasm_memory_limit:,} bytes" if status.wasm_memory_limit else "none (4 GiB heap)"
    days = status.freezing_threshold / 86_400
    return [
        f"cycles       {status.cycles:,} ({status.cycles / 1e12:.3f} T; freezing reserve "
        f"{status.freezing_reserve:,}, {status.idle_cycles_burned_per_day:,} burned per idle day)",
        f"memory       {status.memory_size:,} bytes",
        f"wasm memory  limit {limit}",
        f"freezing     threshold {status.freezing_threshold:,} s ({days:.0f} days)",
        f"status       {status.status}",
    ]


def _human(info: CanisterInfo) -> str:
    lines = [
        f"canister     {info.canister_id} on {info.network_url}",
        f"subnet       {info.subnet or 'not shown by the replica'}",
        f"module hash  {info.module_hash or 'none (no code installed)'}",
        "controllers  "
        + (
            ", ".join(info.controllers) if info.controllers is not None else "not readable with this identity"
        ),
        *_status_lines(info),
    ]
    if not info.has_candid_service:
        lines.append("kind         unknown: no public candid:service metadata")
    for match in info.kinds:
        if match.matches:
            lines.append(f"kind         {match.kind} (its Candid fits every call prep makes)")
            lines += [f"  {note}" for note in match.fallbacks]
    if info.has_candid_service and not info.matching_kinds:
        lines.append("kind         none matches:")
        lines += [f"  {m.kind}: {problem}" for m in info.kinds for problem in m.problems[:3]]
    if info.readiness is None:
        lines.append("readiness    unknown: no ready or health query")
    else:
        state = "ready" if info.readiness.ready else "not ready"
        detail = f" ({info.readiness.detail})" if info.readiness.detail else ""
        lines.append(f"readiness    {state} per {info.readiness.method}{detail}")
    return "\n".join(lines)
