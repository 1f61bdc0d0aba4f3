"""`prep smoke`: ask a deployed model the recipe's prompt (or yours) and check that it answers."""

from __future__ import annotations

from dataclasses import replace
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


def smoke_command(
    canister: CanisterOption,
    recipe: Annotated[str | None, typer.Argument(help="Recipe whose target and prompt to use.")] = None,
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
    from pipeline.recipes import load_recipe
    from pipeline.smoke import SmokeRequest, request_for_recipe, smoke_canister
    from pipeline.targets.profile import load_profile

    out = Output(json=json_output)
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
    variables = dict(_name_value(item) for item in var or [])
    if variables:
        request = replace(request, variables=variables)
    with connect(network, url, choose_identity(pem, identity, anonymous)) as client:
        canister_id = canister_on(client.network, canister)
        answer = smoke_canister(client, profile, canister_id, request, on_event=out.event)
    checked = f" (matches {answer.expect!r})" if answer.expect else ""
    out.info(f"{answer.kind} canister {canister_id} answered in {answer.seconds:.1f} s{checked}")
    out.result(answer.to_json(), answer.transcript())


def _name_value(item: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--var {item!r} is not NAME=VALUE", hint="e.g. --var model=qwen3:32b")
    return name.strip(), value
