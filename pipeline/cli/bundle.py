"""`--bundle dist/RECIPE` of `prep upload` and `prep run`: deploy a release bundle, verified first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.cli.ic_options import canister_on, choose_identity, connect
from pipeline.cli.output import Output

BundleOption = Annotated[
    Path | None,
    typer.Option(
        "--bundle",
        help="A release bundle (dist/RECIPE from prep release): verified first, refused when changed or "
        "incomplete; its artifacts go under the manifest's kind and remote names, then load and smoke.",
    ),
]


def deploy_bundle_command(
    bundle_path: Path,
    *,
    network: str,
    url: str | None,
    identity: tuple[Path | None, str | None, bool],
    canister: str,
    strict_order: bool,
    window: int,
    check_interface: bool,
    confirm: Callable[[dict[str, Any]], bool],
    out: Output,
) -> None:
    from pipeline.deploy import deploy_bundle, open_bundle
    from pipeline.stages import RunOptions
    from pipeline.upload.memory import keep_chunk_buffers
    from pipeline.upload.progress import describe_event
    from pipeline.workspace import Workspace

    keep_chunk_buffers()  # a process-wide allocator setting: the command, which owns the process, decides
    bundle = open_bundle(bundle_path)  # before connecting: a changed bundle never reaches the network
    options = RunOptions(
        strict_order=strict_order,
        window=window,
        check_interface=check_interface,
        progress=not out.json,
    )

    def on_event(event: dict[str, Any]) -> None:
        out.event(event)
        name = event.get("event")
        if out.json or name == "step" or (name == "plan" and event.get("stage") != "upload"):
            return  # steps show in the load stage's line; the load stage repeats the upload's plan
        if name == "stage":
            if event.get("status") != "started":
                out.info(
                    f"{event['stage']}: {event['status']}, {event.get('detail') or event.get('error', '')}"
                )
        elif text := describe_event(event):
            out.info(text)

    with connect(network, url, choose_identity(*identity)) as client:
        canister_id = canister_on(client.network, canister)
        report = deploy_bundle(
            bundle, client, canister_id, Workspace.default(), options, on_event=on_event, confirm=confirm
        )
    out.result(
        {"bundle": str(bundle.path), "built_by": bundle.built_by, **report.to_json()}, report.summary()
    )
