"""`prep tune`: find the largest max_tokens per run_update under the instruction limit, by probing."""

from __future__ import annotations

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
from pipeline.errors import UsageError


def tune_command(
    canister: CanisterOption,
    recipe: Annotated[
        str | None, typer.Argument(help="Recipe file to write max_tokens_update into (its target kind).")
    ] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Canister kind, without a recipe.")] = None,
    network: NetworkOption = "local",
    url: UrlOption = None,
    pem: PemOption = None,
    identity: IdentityOption = None,
    anonymous: AnonymousOption = False,
    ceiling: Annotated[int, typer.Option("--ceiling", min=1, help="Largest value to try.")] = 4096,
    json_output: JsonFlag = False,
) -> None:
    """Probe a loaded llama_cpp canister for the most tokens one run_update can take, and set it.

    With a RECIPE the value is written into the recipe's [target] max_tokens_update; otherwise printed.
    Each probe is set_max_tokens + new_chat + one run_update (a few update calls: cycles, not much).
    """
    from pipeline.recipes import load_recipe
    from pipeline.targets.profile import load_profile
    from pipeline.tune import Probe, tune_max_tokens, write_max_tokens

    out = Output(json=json_output)
    if (recipe is None) == (kind is None):
        raise UsageError("give a RECIPE or --kind KIND", hint="e.g. prep tune --kind llama_cpp --canister ID")
    loaded = load_recipe(recipe) if recipe is not None else None
    profile = load_profile(loaded.target.kind if loaded is not None else str(kind))

    def show(probe: Probe) -> None:
        out.event({"event": "probe", "max_tokens": probe.max_tokens, "fits": probe.fits})
        out.info(
            f"max_tokens_update {probe.max_tokens}: {'fits' if probe.fits else 'over the instruction limit'}"
        )

    with connect(network, url, choose_identity(pem, identity, anonymous)) as client:
        canister_id = canister_on(client.network, canister)
        result = tune_max_tokens(client, canister_id, profile, ceiling=ceiling, on_probe=show)
    written = None
    if loaded is not None:
        write_max_tokens(loaded.path, result.max_tokens_update)
        load_recipe(str(loaded.path))  # the edited recipe must still be valid
        written = str(loaded.path)
    out.result(
        {"canister": canister_id, "max_tokens_update": result.max_tokens_update,
         "max_tokens_query": result.max_tokens_query, "probes": len(result.probes), "recipe": written},
        f"max_tokens_update = {result.max_tokens_update} (set on {canister_id}; {len(result.probes)} probes)"
        + (f"; written to {written}" if written else ""),
    )  # fmt: skip
