"""`prep smoke`: ask a deployed model the recipe's prompt (or yours) and check that it answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.fleet import OnlyOption, chosen_fleet, is_single, run_fleet_command
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
from pipeline.errors import UsageError

if TYPE_CHECKING:
    from pipeline.fleet.spec import Fleet, FleetMember
    from pipeline.smoke import SmokeRequest
    from pipeline.targets.profile import TargetProfile


def smoke_command(
    ctx: typer.Context,
    canister: CanistersOption = None,
    recipe: Annotated[str | None, typer.Argument(help="Recipe whose target and prompt to use.")] = None,
    fleet: FleetOption = None,
    only: OnlyOption = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Canister kind, without a recipe (llama_cpp, gpt2, ...).")
    ] = None,
    network: NetworkOption = "local",
    url: UrlOption = None,
    pem: PemOption = None,
    identity: IdentityOption = None,
    anonymous: AnonymousOption = False,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="Ask this instead of the recipe's prompt.")
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", min=1, help="Tokens to generate (default: the recipe's, or 20)."),
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option(
            "--var",
            metavar="NAME=VALUE",
            help="Set a value of the kind's smoke dialogue (e.g. model=qwen3:32b).",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Prove a deployed model answers: send a prompt, print the text, check the recipe's expectation."""
    from pipeline.fleet.jobs import smoke_job
    from pipeline.recipes import load_recipe
    from pipeline.smoke import SmokeRequest, request_for_recipe, smoke_canister
    from pipeline.targets.profile import load_profile

    out = Output(json=json_output)
    chosen = chosen_fleet(canister, fleet, only)
    variables = dict(_name_value(item) for item in var or [])
    if not is_single(chosen):
        request_of = _fleet_requests(chosen, recipe, kind, prompt, max_tokens, variables)
        run_fleet_command(
            ctx,
            chosen, lambda _targets: smoke_job(request_of),
            network=network, url=url, signer=(pem, identity, anonymous), only=only, window=1,
            out=out, yes=True,
        )  # fmt: skip
        return
    if (recipe is None) == (kind is None):
        raise UsageError(
            "give a RECIPE or --kind KIND", hint="e.g. prep smoke --kind llama_cpp --prompt Hello"
        )
    if recipe is not None:
        target = load_recipe(recipe).target
        profile = load_profile(target.kind)
        request = request_for_recipe(target, prompt=prompt, max_tokens=max_tokens)
    else:
        assert kind is not None
        if prompt is None:
            raise UsageError("--kind needs --prompt", hint='e.g. --prompt "Once upon a time"')
        profile = load_profile(kind)
        request = SmokeRequest(prompt=prompt, max_tokens=max_tokens or 20)
    if variables:
        request = replace(request, variables=variables)
    with connect(network, url, choose_identity(pem, identity, anonymous)) as client:
        canister_id = canister_on(client.network, chosen.members[0].canister)
        answer = smoke_canister(client, profile, canister_id, request, on_event=out.event)
    checked = f" (matches {answer.expect!r})" if answer.expect else ""
    out.info(f"{answer.kind} canister {canister_id} answered in {answer.seconds:.1f} s{checked}")
    out.result(answer.to_json(), answer.transcript())


def _fleet_requests(
    fleet: Fleet,
    recipe: str | None,
    kind: str | None,
    prompt: str | None,
    max_tokens: int | None,
    variables: dict[str, str],
) -> Callable[[FleetMember], tuple[TargetProfile, SmokeRequest]]:
    """Each canister's kind and prompt: its recipe's (the fleet file may name one per canister), or --kind."""
    from pipeline.fleet.jobs import recipe_name_for, with_overrides
    from pipeline.recipes import load_recipe
    from pipeline.smoke import SmokeRequest, request_for_recipe
    from pipeline.targets.profile import load_profile

    if kind is not None:
        if recipe is not None or fleet.recipes:
            raise UsageError("give a RECIPE or --kind KIND, not both (nor `recipe` in the fleet file)")
        if prompt is None:
            raise UsageError("--kind needs --prompt", hint='e.g. --prompt "Once upon a time"')
        adhoc = (load_profile(kind), SmokeRequest(prompt, max_tokens or 20, variables=variables))
        return lambda _member: adhoc
    recipes = {name: load_recipe(name) for name in {recipe_name_for(m, recipe) for m in fleet.members}}

    def request_of(member: FleetMember) -> tuple[TargetProfile, SmokeRequest]:
        target = with_overrides(recipes[recipe_name_for(member, recipe)].target, member)
        request = request_for_recipe(target, prompt=prompt, max_tokens=max_tokens)
        return load_profile(target.kind), replace(request, variables=variables) if variables else request

    return request_of


def _name_value(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--var {item!r} is not NAME=VALUE", hint="e.g. --var model=qwen3:32b")
    return name.strip(), value
