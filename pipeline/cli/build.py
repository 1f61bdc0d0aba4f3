"""`prep build`: turn a recipe's fetched files into the artifacts its canister loads."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.output import JsonFlag, Output

if TYPE_CHECKING:
    from pipeline.build import BuildResult
    from pipeline.smoke_local import SmokeResult


def build_command(
    recipe_name: Annotated[str, typer.Argument(help="Recipe name or path to a recipe .toml.")],
    smoke: Annotated[
        bool, typer.Option("--smoke", help="Generate a few tokens locally from the built files.")
    ] = False,
    locked: Annotated[
        bool, typer.Option("--locked", help="Refuse fetched files that differ from the lock file.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Convert / quantize / trim as the recipe says, validate, check the fit; skip when unchanged."""
    from pipeline.build import build_recipe
    from pipeline.hub import fetch_recipe
    from pipeline.recipes import load_recipe
    from pipeline.smoke_local import smoke_local
    from pipeline.workspace import Workspace

    out = Output(json=json_output)
    workspace = Workspace.default()
    recipe = load_recipe(recipe_name)
    fetched = fetch_recipe(
        recipe, locked=locked, progress=not json_output, workspace=workspace, on_event=out.event
    )
    result = build_recipe(recipe, fetched, workspace, on_event=out.event)
    smoke_result = smoke_local(recipe.target.kind, result.artifacts, recipe.target.smoke) if smoke else None
    out.result(_result_json(result, smoke_result), _human(result, smoke_result))


def _result_json(result: BuildResult, smoke: SmokeResult | None) -> dict[str, object]:
    data: dict[str, object] = {
        "skipped": result.skipped,
        "stage_dir": str(result.stage_dir),
        "artifacts": {
            role: {"path": str(a.path), "size": a.size, "sha256": a.sha256}
            for role, a in sorted(result.artifacts.items())
        },
        "fit": {
            "kind": result.fit.kind,
            "heap_bytes": result.fit.heap_bytes,
            "checks": [c.detail for c in result.fit.checks],
        },
    }
    if smoke is not None:
        data["smoke"] = {"text": smoke.text, "n_generated": smoke.n_generated, "passed": smoke.passed}
    return data


def _human(result: BuildResult, smoke: SmokeResult | None) -> str:
    lines = ["skipped: inputs unchanged" if result.skipped else f"built in {result.stage_dir}"]
    lines += [
        f"{role}: {a.path}  {a.size:,} B  sha256 {a.sha256}" for role, a in sorted(result.artifacts.items())
    ]
    lines.append(f"fits {result.fit.kind}: " + "; ".join(c.detail for c in result.fit.checks))
    if smoke is not None:
        lines.append(f"smoke: {smoke.text!r} ({smoke.n_generated} tokens) matches {smoke.expect!r}")
    return "\n".join(lines)
