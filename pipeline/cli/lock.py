"""`prep lock`: resolve recipes' revisions to commits, hash their files, write (or check) the lock files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import JsonFlag, Output
from pipeline.errors import PrepError, UsageError


def lock_command(
    recipe_names: Annotated[
        list[str] | None, typer.Argument(help="Recipe names or paths to recipe .toml files.")
    ] = None,
    all_recipes: Annotated[bool, typer.Option("--all", help="Every recipe in the recipes folder.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 when a lock is missing or stale (CI).")
    ] = False,
    markdown: Annotated[
        Path | None,
        typer.Option("--markdown", help="Also write the changes as Markdown here (a pull request body)."),
    ] = None,
    recipes_dir: Annotated[
        Path | None,
        typer.Option("--recipes-dir", help="Directory of recipe TOML files (default: ./recipes)."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Write <recipe>.lock.json: each revision's commit, every file's size and sha256; print what moved.

    LFS files are hashed by the Hub's own sha256 (checked again against the bytes by prep fetch --locked),
    other files are downloaded and hashed. A recipe that cannot be resolved is reported and exits 1;
    the others are still locked.
    """
    from pipeline.atomic import write_atomic
    from pipeline.hub.relock import lock_recipe, locks_markdown
    from pipeline.recipes import list_recipes, load_recipe

    if all_recipes == bool(recipe_names):
        raise UsageError("give RECIPE names or --all", hint="e.g. prep lock smollm2-135m, or prep lock --all")
    recipes = (
        list_recipes(recipes_dir)
        if all_recipes
        else [load_recipe(name, recipes_dir) for name in recipe_names or []]
    )
    if not recipes:
        raise UsageError(f"no recipes in {recipes_dir or 'the recipes folder'}")
    out = Output(json=json_output)
    updates = []
    for recipe in recipes:
        update = lock_recipe(recipe, check=check, progress=not json_output, on_event=out.event)
        out.event({"event": "lock", **update.to_json()})
        updates.append(update)
    if markdown is not None:
        write_atomic(markdown, locks_markdown(updates).encode())
    stale = [u.recipe for u in updates if u.stale]
    failed = [u.recipe for u in updates if u.status == "failed"]
    out.result(
        {"check": check, "stale": stale, "failed": failed, "locks": [u.to_json() for u in updates]},
        "\n".join(u.describe() for u in updates),
    )
    if failed:
        others = len(updates) > len(failed)
        raise PrepError(
            f"could not resolve {', '.join(failed)} (see above)"
            + (f"; the other locks are {'checked' if check else 'written'}" if others else ""),
            hint="fix the recipe or retry when the Hub answers",
        )
    if check and stale:
        raise PrepError(
            f"{len(stale)} of {len(updates)} lock{'s' if len(updates) > 1 else ''} missing or stale: "
            + ", ".join(stale),
            hint="run prep lock " + (" ".join(stale) if len(stale) < 4 else "--all") + ", review and commit",
        )
