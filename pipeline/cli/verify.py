"""`prep verify`: re-check a release bundle (sizes, sha256s, manifest against SHA256SUMS)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.app import app
from pipeline.cli.output import JsonFlag, Output


@app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder written by prep release, e.g. dist/NAME.")],
    json_output: JsonFlag = False,
) -> None:
    """Check every file of a release bundle; exit 1 naming each problem."""
    from pipeline.release import verify_bundle

    report = verify_bundle(bundle)
    total = sum(f.size for f in report.files)
    out = Output(json=json_output)
    out.result(
        {"ok": True, **report.to_json()},
        f"{bundle}: OK, {len(report.files)} files, {total:,} B ({report.recipe} for {report.kind})",
    )
