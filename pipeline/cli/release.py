"""`prep release`: a recipe's artifacts as a reproducible bundle in dist/<recipe>/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import JsonFlag, Output


def release_command(
    recipe_name: Annotated[str, typer.Argument(help="Recipe name or path to a recipe .toml.")],
    locked: Annotated[
        bool, typer.Option("--locked", help="Refuse anything the lock file does not record (for automation).")
    ] = False,
    dist: Annotated[Path, typer.Option("--dist", help="Folder that receives <recipe>/.")] = Path("dist"),
    json_output: JsonFlag = False,
) -> None:
    """Write dist/RECIPE/: the artifacts, SHA256SUMS and manifest.json (provenance); byte-reproducible."""
    from pipeline.recipes import load_recipe
    from pipeline.release import release_recipe
    from pipeline.workspace import Workspace

    out = Output(json=json_output)
    recipe = load_recipe(recipe_name)
    bundle = release_recipe(
        recipe, dist, Workspace.default(), locked=locked, progress=not json_output, on_event=out.event
    )
    lines = [f"{'unchanged' if bundle.unchanged else 'wrote'} {bundle.path}"]
    lines += [f"  {f.sha256}  {f.name}  {f.size:,} B" for f in bundle.files]
    out.result(bundle.to_json(), "\n".join(lines))
