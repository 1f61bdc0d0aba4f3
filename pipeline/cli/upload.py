"""`prep upload`: put a recipe's built files (or one --file) into a canister, resumably, then load."""

from __future__ import annotations

from pathlib import Path
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
    from pipeline.fleet.scheduler import Work
    from pipeline.fleet.spec import Fleet
    from pipeline.upload.entry import UploadOptions


def upload_command(
    ctx: typer.Context,
    canister: CanistersOption = None,
    recipe: Annotated[str | None, typer.Argument(help="Recipe whose built files to upload.")] = None,
    fleet: FleetOption = None,
    only: OnlyOption = None,
    network: NetworkOption = "local",
    url: UrlOption = None,
    pem: PemOption = None,
    identity: IdentityOption = None,
    anonymous: AnonymousOption = False,
    file: Annotated[Path | None, typer.Option("--file", help="Upload this one file (no recipe).")] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="Canister kind for --file (llama_cpp, gpt2, ... or a folder)."),
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option("--remote", help="With --file: remote file name (offset kinds) or role (append kinds)."),
    ] = None,
    yes: YesOption = False,
    strict_order: Annotated[
        bool,
        typer.Option("--strict-order", help="One chunk at a time, in order: the canister's sha256 matches."),
    ] = False,
    window: WindowOption = DEFAULT_WINDOW,
    no_load: Annotated[bool, typer.Option("--no-load", help="Send the bytes only; skip load/ready.")] = False,
    no_interface_check: Annotated[
        bool, typer.Option("--no-interface-check", help="Skip comparing the canister's candid:service.")
    ] = False,
    bundle: BundleOption = None,
    status: Annotated[
        bool, typer.Option("--status", help="Show the journal and the canister's view; send nothing.")
    ] = False,
    ignore_cycles: IgnoreCyclesOption = False,
    wasm_memory_limit: WasmMemoryLimitOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="If another prep uploads the same file, wait for it (else exit 1).")
    ] = False,
    no_validate: Annotated[
        bool, typer.Option("--no-validate", help="Skip checking each file's format before sending it.")
    ] = False,
    restart: Annotated[
        bool, typer.Option("--restart", help="Discard the journal: send every file from its first byte.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Read back files the journal says are complete and resend what differs "
            "(append kinds have no read-back: their lengths are compared, as on every run).",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Upload model files into a canister (or a fleet of them): resumable, exactly once, verified, loaded.

    Progress is journaled in $PREP_WORKDIR/.journal/ (default ./work): rerun the same command to resume.
    """
    from pipeline.targets.profile import load_profile
    from pipeline.upload.entry import UploadOptions, adhoc_files, recipe_files, run_upload, upload_status
    from pipeline.upload.memory import keep_chunk_buffers
    from pipeline.upload.progress import UploadProgress
    from pipeline.workspace import Workspace

    out = Output(json=json_output)
    keep_chunk_buffers()  # a process-wide allocator setting: the command, which owns the process, decides
    chosen = chosen_fleet(canister, fleet, only)
    if not is_single(chosen):
        if bundle is not None or status:
            raise UsageError("--bundle and --status work on one --canister", hint="run them per canister")
        options = UploadOptions(
            workspace_root=Workspace.default().root,
            strict_order=strict_order,
            window=window,
            check_interface=not no_interface_check,
            load=not no_load,
            budget=budget_options(ignore_cycles, wasm_memory_limit),
            wait_for_lock=wait,
            validate=not no_validate,
            restart=restart,
            verify=verify,
        )
        run_fleet_command(
            ctx,
            chosen,
            lambda _targets: _fleet_upload(chosen, recipe, (file, kind, remote), options),
            network=network, url=url, signer=(pem, identity, anonymous), only=only, window=window,
            out=out, yes=yes,
        )  # fmt: skip
        return
    canister_name = chosen.members[0].canister
    if [recipe is not None, file is not None, bundle is not None].count(True) != 1:
        raise UsageError(
            "give a RECIPE, --bundle dist/RECIPE or --file PATH --kind KIND",
            hint="prep upload --help shows the three forms",
        )
    if bundle is not None:
        if no_load or status:
            raise UsageError("--bundle deploys the whole bundle: it goes without --no-load and --status")
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
    if file is not None and kind is None:
        raise UsageError("--file needs --kind", hint="e.g. --kind llama_cpp")
    budget = budget_options(ignore_cycles, wasm_memory_limit)
    if recipe is not None and (kind is not None or remote is not None):
        raise UsageError(
            "--kind and --remote go with --file", hint="a recipe names its kind and remote files"
        )
    workspace = Workspace.default()
    if recipe is not None:
        profile, files, variables = recipe_files(recipe, workspace)
    else:
        assert file is not None and kind is not None
        profile, variables = load_profile(kind), {}
        files = adhoc_files(profile, file, remote)
    client = connect(network, url, choose_identity(pem, identity, anonymous))
    canister_id = canister_on(client.network, canister_name)
    with client:
        if status:
            remotes = {f.role: f.remote for f in files}
            rows = upload_status(client, profile, canister_id, workspace.root, remotes)
            out.result({"canister": canister_id, "kind": profile.kind, "files": rows}, _status_text(rows))
            return
        options = UploadOptions(
            workspace_root=workspace.root,
            strict_order=strict_order,
            window=window,
            check_interface=not no_interface_check,
            load=not no_load,
            budget=budget,
            wait_for_lock=wait,
            validate=not no_validate,
            restart=restart,
            verify=verify,
        )
        progress = UploadProgress(
            out.event if json_output else _narrate(out), bar=False if json_output else None
        )
        report = run_upload(
            client,
            profile,
            canister_id,
            files,
            options,
            variables=variables,
            progress=progress,
            confirm=mainnet_confirmation(out, yes),
        )
    rate = report.bytes_sent / max(report.seconds, 1e-9) / 1e6
    out.result(
        {"canister": canister_id, "kind": report.kind, "files": report.files, "steps": report.steps,
         "bytes_sent": report.bytes_sent, "chunks_sent": report.chunks_sent,
         "chunks_resent": report.chunks_resent, "seconds": round(report.seconds, 3), "cycles": report.cycles,
         "flow": report.flow},
        f"uploaded {', '.join(f['remote'] for f in report.files)} to {report.kind} canister {canister_id}: "
        f"{report.bytes_sent:,} bytes sent in {report.seconds:.1f} s ({rate:.1f} MB/s)"
        + _window_text(report.flow)
        + (f"; ran {', '.join(report.steps)}" if report.steps else "")
        + _cycles_text(report.cycles),
    )  # fmt: skip


def _window_text(flow: dict[str, Any] | None) -> str:
    if not flow or not flow.get("adaptive"):
        return ""
    return f", window {flow['peak_window']} (adaptive)"


def _fleet_upload(
    fleet: Fleet,
    recipe: str | None,
    adhoc: tuple[Path | None, str | None, str | None],
    options: UploadOptions,
) -> Work:
    """The upload each canister of the fleet gets: its recipe's build (the fleet file may name one per
    canister), or the one --file."""
    from pipeline.fleet.jobs import recipe_upload_plans, upload_job
    from pipeline.targets.profile import load_profile
    from pipeline.upload.entry import adhoc_files
    from pipeline.workspace import Workspace

    file, kind, remote = adhoc
    if file is None:
        if kind is not None or remote is not None:
            raise UsageError(
                "--kind and --remote go with --file", hint="a recipe names its kind and remote files"
            )
        workspace = Workspace(options.workspace_root)
        return upload_job(recipe_upload_plans(fleet.members, recipe, workspace), options)
    if recipe is not None or fleet.recipes:
        raise UsageError(
            "--file uploads one file to every canister: drop the RECIPE (and `recipe` in the fleet file)",
            hint="prep upload --help shows the forms",
        )
    if kind is None:
        raise UsageError("--file needs --kind", hint="e.g. --kind llama_cpp")
    profile = load_profile(kind)
    plan = (profile, adhoc_files(profile, file, remote), {})
    return upload_job(lambda _member: plan, options)


def _cycles_text(cycles: dict[str, Any] | None) -> str:
    if not cycles:
        return ""
    estimated = f"estimated {cycles['estimated'] / 1e12:.4f} T"
    if cycles["spent"] is None:
        return f"\ncycles: {estimated} (balance not readable: not a controller)"
    return (
        f"\ncycles: spent {cycles['spent'] / 1e12:.4f} T ({cycles['before']:,} -> {cycles['after']:,}), "
        f"{estimated}"
    )


def _narrate(out: Output) -> EventSink:
    from pipeline.upload.progress import describe_event

    def show(event: dict[str, Any]) -> None:
        text = describe_event(event)
        if text:
            out.info(text)

    return show


def _status_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        if "size" not in row:
            journal = "no journal"
        else:
            acknowledged = f"{row.get('acknowledged_bytes', 0):,} of {row['size']:,} bytes"
            if "chunks_total" in row:
                acknowledged = f"{row['chunks_done']} of {row['chunks_total']} chunks ({acknowledged})"
            journal = (
                f"journal: {acknowledged} acknowledged"
                f"{', complete' if row['bytes_complete'] else ''}, {row['in_flight']} in flight"
                f"{'' if row['same_code'] else ', canister code changed since'}"
                f"{', canister changed since the last run' if row.get('canister_agrees') is False else ''}"
            )
        held = row.get("canister_bytes")
        canister = row.get("canister_error") or (
            "canister: nothing" if held is None else f"canister: {held:,} bytes"
        )
        lines.append(f"{row['role']} -> {row['remote']}: {journal}; {canister}")
    return "\n".join(lines)
