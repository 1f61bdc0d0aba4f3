"""`prep run`: every stage of a recipe into one canister, each skipped when it has nothing to do."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pipeline.cli.bundle import BundleOption, deploy_bundle_command
from pipeline.cli.ic_options import (
    DEFAULT_WINDOW,
    AnonymousOption,
    CanisterOption,
    IdentityOption,
    IgnoreCyclesOption,
    NetworkOption,
    PemOption,
    UrlOption,
    WasmMemoryLimitOption,
    WindowOption,
    YesOption,
    budget_options,
    canister_on,
    choose_identity,
    connect,
    mainnet_confirmation,
)
from pipeline.cli.output import JsonFlag, Output
from pipeline.errors import UsageError


def run_command(
    canister: CanisterOption,
    recipe_name: Annotated[str | None, typer.Argument(help="Recipe name or path to a recipe .toml.")] = None,
    network: NetworkOption = "local",
    url: UrlOption = None,
    pem: PemOption = None,
    identity: IdentityOption = None,
    anonymous: AnonymousOption = False,
    yes: YesOption = False,
    locked: Annotated[
        bool, typer.Option("--locked", help="Refuse fetched files that differ from the lock file.")
    ] = False,
    strict_order: Annotated[
        bool,
        typer.Option("--strict-order", help="One chunk at a time, in order: the canister's sha256 matches."),
    ] = False,
    window: WindowOption = DEFAULT_WINDOW,
    no_interface_check: Annotated[
        bool, typer.Option("--no-interface-check", help="Skip comparing the canister's candid:service.")
    ] = False,
    bundle: BundleOption = None,
    ignore_cycles: IgnoreCyclesOption = False,
    wasm_memory_limit: WasmMemoryLimitOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Fetch, build, upload, load and smoke-test a recipe; a rerun skips what is already done."""
    from pipeline.recipes import load_recipe
    from pipeline.stages import RunOptions, run_recipe
    from pipeline.upload.memory import keep_chunk_buffers
    from pipeline.workspace import Workspace

    out = Output(json=json_output)
    keep_chunk_buffers()  # a process-wide allocator setting: the command, which owns the process, decides
    if (recipe_name is None) == (bundle is None):
        raise UsageError("give a RECIPE or --bundle dist/RECIPE", hint="prep run --help shows both forms")
    if bundle is not None:
        if locked:
            raise UsageError("--locked is for recipes: a bundle is checked against its own SHA256SUMS")
        deploy_bundle_command(
            bundle,
            network=network,
            url=url,
            identity=(pem, identity, anonymous),
            canister=canister,
            strict_order=strict_order,
            window=window,
            check_interface=not no_interface_check,
            confirm=mainnet_confirmation(out, yes),
            out=out,
        )
        return
    assert recipe_name is not None
    workspace = Workspace.default()
    recipe = load_recipe(recipe_name)
    options = RunOptions(
        locked=locked,
        strict_order=strict_order,
        window=window,
        check_interface=not no_interface_check,
        progress=not json_output,
        budget=budget_options(ignore_cycles, wasm_memory_limit),
    )

    def on_event(event: dict[str, Any]) -> None:
        out.event(event)
        if not json_output and event.get("event") == "stage" and event.get("status") != "started":
            out.info(_stage_line(event))

    with connect(network, url, choose_identity(pem, identity, anonymous)) as client:
        canister_id = canister_on(client.network, canister)
        report = run_recipe(
            recipe,
            client,
            canister_id,
            workspace,
            options,
            on_event=on_event,
            confirm=mainnet_confirmation(out, yes),
        )
    out.result(report.to_json(), report.summary())


def _stage_line(event: dict[str, Any]) -> str:
    from pipeline.stages import StageReport

    if event["status"] == "failed":
        return f"{event['stage']}: failed"
    stage = StageReport(**{k: v for k, v in event.items() if k != "event"})
    return f"{stage.stage}: {stage.status} ({stage.seconds:.2f} s)" + (
        f": {stage.reason}" if stage.reason else ""
    )
