"""Options shared by every command that talks to the IC: network, canister, identity and upload window."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli.output import Output

if TYPE_CHECKING:
    from pipeline.ic.client import IcClient
    from pipeline.ic.identity import IcIdentity
    from pipeline.ic.network import Network
    from pipeline.upload.budget import BudgetOptions

# pipeline.upload.request.DEFAULT_WINDOW, written out so that --help need not import the upload stack
# (tests/test_cli.py checks that the two agree).
DEFAULT_WINDOW = 64

NetworkOption = Annotated[
    str,
    typer.Option(
        "--network", help="local (dfx.json bind or 127.0.0.1:4943), ic (mainnet), or a replica URL."
    ),
]
UrlOption = Annotated[str | None, typer.Option("--url", help="Replica URL for a named network (e.g. local).")]
# Without a default where a command needs it (upload, run, smoke, tune, canister info): typer refuses the
# command without it. prep verify checks a canister only when given one (default "").
CanisterOption = Annotated[
    str, typer.Option("--canister", help="Canister id, or a name from the project's canister_ids.json.")
]
# Commands that work on a fleet take the canister repeatedly, or a fleet file (pipeline.fleet.spec).
CanistersOption = Annotated[
    list[str] | None,
    typer.Option(
        "--canister",
        metavar="ID_OR_NAME",
        help="Canister id, or a name from the project's canister_ids.json; repeat it for several.",
    ),
]
FleetOption = Annotated[
    Path | None,
    typer.Option("--fleet", help="A FLEET.toml listing canisters (README: Fleets); instead of --canister."),
]
YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask before a mainnet upload.")]
PemOption = Annotated[
    Path | None, typer.Option("--pem", help="Identity PEM file (Ed25519 or secp256k1); env PREP_PEM.")
]
IdentityOption = Annotated[
    str | None, typer.Option("--identity", help="dfx identity name (~/.config/dfx/identity/NAME).")
]
AnonymousOption = Annotated[bool, typer.Option("--anonymous", help="Sign nothing: the anonymous principal.")]
WindowOption = Annotated[
    int,
    typer.Option(
        "--window",
        min=1,
        max=64,
        help="Most chunks in flight; below it the window adapts to the measured rate and latency.",
    ),
]
IgnoreCyclesOption = Annotated[
    bool, typer.Option("--ignore-cycles", help="Upload even when the balance looks too low for the estimate.")
]
WasmMemoryLimitOption = Annotated[
    str | None,
    typer.Option(
        "--wasm-memory-limit",
        metavar="BYTES|auto",
        help="Set the canister's wasm_memory_limit first (auto: what the model needs, +10%).",
    ),
]


def budget_options(ignore_cycles: bool, wasm_memory_limit: str | None) -> BudgetOptions:
    from pipeline.upload.budget import BudgetOptions, parse_memory_limit

    return BudgetOptions(ignore_cycles, parse_memory_limit(wasm_memory_limit))


def choose_identity(
    pem: Path | None, identity: str | None, anonymous: bool, *, default_anonymous: bool = False
) -> IcIdentity:
    """The identity the options name; with `default_anonymous`, none named or configured is anonymous."""
    from pipeline.ic.identity import load_identity

    return load_identity(pem=pem, identity=identity, anonymous=anonymous, default_anonymous=default_anonymous)


def connect(network: str, url: str | None, identity: IcIdentity) -> IcClient:
    from pipeline.ic.client import IcClient
    from pipeline.ic.network import resolve_network

    return IcClient(resolve_network(network, url), identity)


def canister_on(network: Network, canister: str) -> str:
    from pipeline.ic.network import resolve_canister

    return resolve_canister(canister, network)


def mainnet_confirmation(out: Output, yes: bool) -> Callable[[dict[str, Any]], bool]:
    """The one question every uploading command asks before spending mainnet cycles (`plan` is the
    upload's plan event). --yes answers it; without a terminal to ask on, the answer is no."""

    def confirm(plan: dict[str, Any]) -> bool:
        if yes:
            return True
        messages = plan["messages"]
        out.info(
            f"mainnet: {plan['bytes']:,} bytes in {messages} message{'' if messages == 1 else 's'} to "
            f"{plan['kind']} canister {plan['canister']} cost about "
            f"{plan['estimated_cycles'] / 1e12:.3f} T cycles"
        )
        if not sys.stdin.isatty():
            return False
        return typer.confirm("Upload to mainnet?", default=False, err=True)

    return confirm
