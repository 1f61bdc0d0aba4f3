"""`prep run`: every stage of a recipe into one canister, each skipped when it has nothing to do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pipeline.cli.bundle import BundleOption, deploy_bundle_command
from pipeline.cli.fleet import OnlyOption, chosen_fleet, is_single, run_fleet_command
from pipeline.cli.ic_options import (
    DEFAULT_WINDOW,
    AnonymousOption,
    CanistersOption,
    FleetOption,
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
from pipeline.events import EventSink

if TYPE_CHECKING:
    from pipeline.fleet.members import FleetTarget
    from pipeline.fleet.scheduler import Work
    from pipeline.fleet.spec import Fleet
    from pipeline.manifest import Artifact
    from pipeline.stages import RunOptions


def run_command(
    ctx: typer.Context,
    canister: CanistersOption = None,
    recipe_name: Annotated[str | None, typer.Argument(help="Recipe name or path to a recipe .toml.")] = None,
    fleet: FleetOption = None,
    only: OnlyOption = None,
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
    """Fetch, build, upload, load and smoke-test a recipe (into one canister or a fleet); a rerun skips
    what is already done."""
    from pipeline.recipes import load_recipe
    from pipeline.stages import RunOptions, run_recipe
    from pipeline.upload.memory import keep_chunk_buffers
    from pipeline.workspace import Workspace

    out = Output(json=json_output)
    keep_chunk_buffers()  # a process-wide allocator setting: the command, which owns the process, decides
    chosen = chosen_fleet(canister, fleet, only)
    options = RunOptions(
        locked=locked,
        strict_order=strict_order,
        window=window,
        check_interface=not no_interface_check,
        progress=not json_output,
        budget=budget_options(ignore_cycles, wasm_memory_limit),
    )
    if not is_single(chosen):
        if bundle is not None:
            raise UsageError("--bundle deploys into one --canister", hint="run it per canister")
        run_fleet_command(
            ctx,
            chosen,
            lambda targets: _fleet_run(chosen, targets, recipe_name, options, out),
            network=network, url=url, signer=(pem, identity, anonymous), only=only, window=window,
            out=out, yes=yes,
        )  # fmt: skip
        return
    canister_name = chosen.members[0].canister
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
            canister=canister_name,
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

    on_event = _stage_narrator(out)
    with connect(network, url, choose_identity(pem, identity, anonymous)) as client:
        canister_id = canister_on(client.network, canister_name)
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


def _stage_narrator(out: Output) -> EventSink:
    def on_event(event: dict[str, Any]) -> None:
        out.event(event)
        if not out.json and event.get("event") == "stage" and event.get("status") != "started":
            out.info(_stage_line(event))

    return on_event


def _fleet_run(
    fleet: Fleet, targets: list[FleetTarget], recipe_name: str | None, options: RunOptions, out: Output
) -> Work:
    """Fetches and builds each recipe the fleet uses once, here; each canister then uploads, loads and
    smokes in its own thread."""
    from pipeline.fleet.jobs import recipe_name_for, run_job
    from pipeline.recipes import load_recipe
    from pipeline.stages import StagedRun
    from pipeline.workspace import Workspace

    workspace = Workspace.default()
    recipes = {name: load_recipe(name) for name in {recipe_name_for(m, recipe_name) for m in fleet.members}}
    built: dict[str, dict[str, Artifact]] = {}
    for target in targets:
        recipe = recipes[recipe_name_for(target.member, recipe_name)]
        if recipe.name not in built:
            prepare = StagedRun(
                recipe.name, recipe.target, target.client, target.canister_id, workspace, options,
                _stage_narrator(out), None,
            )  # fmt: skip
            built[recipe.name] = prepare.fetch_and_build(recipe)
    return run_job(
        lambda member: recipes[recipe_name_for(member, recipe_name)],
        lambda recipe: built[recipe.name],
        workspace,
        options,
    )


def _stage_line(event: dict[str, Any]) -> str:
    from pipeline.stages import StageReport

    if event["status"] == "failed":
        return f"{event['stage']}: failed"
    stage = StageReport(**{k: v for k, v in event.items() if k != "event"})
    return f"{stage.stage}: {stage.status} ({stage.seconds:.2f} s)" + (
        f": {stage.reason}" if stage.reason else ""
    )
