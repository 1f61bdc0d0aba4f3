"""`prep recipes`: list the recipes; `prep recipes show NAME`: one recipe, resolved."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from pipeline.cli.output import JsonFlag, Output

if TYPE_CHECKING:
    from pipeline.recipes import Recipe, Source

recipes_app = typer.Typer(
    name="recipes",
    help="List the recipes: what each fetches, how it builds and for which canister.",
    invoke_without_command=True,
    no_args_is_help=False,
)

RecipesDir = Annotated[
    Path | None,
    typer.Option("--recipes-dir", help="Directory of recipe TOML files (default: ./recipes)."),
]


@recipes_app.callback()
def recipes_command(
    ctx: typer.Context, json_output: JsonFlag = False, recipes_dir: RecipesDir = None
) -> None:
    """List the recipes in ./recipes (outside a project: the examples shipped with prep)."""
    if ctx.invoked_subcommand is not None:
        return
    from pipeline.recipes import list_recipes

    out = Output(json=json_output)
    directory, examples = _recipes_or_examples(recipes_dir, out)
    rows = [_summary(r) for r in list_recipes(directory)]
    out.result({"recipes": rows, "examples": examples}, _table(rows))


@recipes_app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Recipe name or path to a recipe .toml file.")],
    json_output: JsonFlag = False,
    recipes_dir: RecipesDir = None,
) -> None:
    """Show one recipe with every default filled in (outside a project: a shipped example)."""
    from pipeline.recipes import load_recipe

    out = Output(json=json_output)
    directory, _ = _recipes_or_examples(recipes_dir, out)
    recipe = load_recipe(name, directory)
    data = recipe_to_json(recipe)
    out.result({"recipe": data}, "\n".join(_flatten(data)))


def _recipes_or_examples(recipes_dir: Path | None, out: Output) -> tuple[Path | None, bool]:
    """Where `prep recipes` reads: --recipes-dir, ./recipes, or (outside a project, saying so) the
    examples shipped with prep. Only these read-only commands fall back to the examples; a command
    that fetches, builds or writes a lock needs a recipe of the project."""
    from pipeline.recipes import RECIPES_FOLDER, shipped_recipes_dir

    if recipes_dir is not None or (Path.cwd() / RECIPES_FOLDER).is_dir():
        return recipes_dir, False
    out.info(
        f"no ./{RECIPES_FOLDER} here: showing the examples shipped with prep "
        f"(`prep recipes copy NAME` copies one into ./{RECIPES_FOLDER})"
    )
    return shipped_recipes_dir(), True


@recipes_app.command("copy")
def copy_command(
    name: Annotated[str, typer.Argument(help="Name of an example recipe shipped with prep.")],
    force: Annotated[bool, typer.Option("--force", help="Replace a different recipe of that name.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Copy an example recipe shipped with prep (and its lock file) into ./recipes, to use or edit."""
    from pipeline.recipes import copy_shipped_recipe

    copied = copy_shipped_recipe(name, Path.cwd(), force=force)
    Output(json=json_output).result(
        {"copied": [str(path) for path in copied]}, "\n".join(f"wrote {path}" for path in copied)
    )


def recipe_to_json(recipe: Recipe) -> dict[str, Any]:
    from pipeline.recipes import HubSource

    data = dataclasses.asdict(recipe)
    data["path"] = str(recipe.path)
    data["lock_path"] = str(recipe.lock_path)
    data["sources"] = [
        {"type": "hub" if isinstance(s, HubSource) else "url", **dataclasses.asdict(s)}
        for s in recipe.sources
    ]
    return data


def _summary(recipe: Recipe) -> dict[str, Any]:
    build = recipe.build.kind
    if recipe.build.outtype:
        build += f" {recipe.build.outtype}"
    if recipe.build.quantize:
        build += f" -> {recipe.build.quantize}"
    if recipe.build.dtype:
        build += f" {recipe.build.dtype}"
    return {
        "name": recipe.name,
        "source": " + ".join(_short_label(s) for s in recipe.sources),
        "build": build,
        "target": recipe.target.kind,
        "size": recipe.known_size,
        "description": recipe.description,
    }


def _short_label(source: Source) -> str:
    from pipeline.recipes import HubSource

    if isinstance(source, HubSource):
        return source.label
    return f"{urlsplit(source.url).netloc}/…/{source.filename}"


def _human_size(size: int | None) -> str:
    if size is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    return "-"


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no recipes found"
    header = ("NAME", "SOURCE", "BUILD", "TARGET", "SIZE")
    cells = [(r["name"], r["source"], r["build"], r["target"], _human_size(r["size"])) for r in rows]
    widths = [max(len(str(row[i])) for row in [header, *cells]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *cells]
    )


def _flatten(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [line for k, v in data.items() for line in _flatten(v, f"{prefix}.{k}" if prefix else k)]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return [line for i, v in enumerate(data) for line in _flatten(v, f"{prefix}[{i}]")]
    return [f"{prefix} = {data!r}"]


@recipes_app.command("new")
def new_command(
    repo_id: Annotated[str, typer.Argument(help="Hugging Face repo id, e.g. Qwen/Qwen3-0.6B-GGUF.")],
    kind: Annotated[
        str, typer.Option("--kind", help="Canister kind: llama_cpp, gpt2 or icpp_llama2.")
    ] = "llama_cpp",
    name: Annotated[
        str | None, typer.Option("--name", help="Recipe name (default: from the chosen file).")
    ] = None,
    revision: Annotated[str, typer.Option("--revision", help="Branch, tag or commit to judge.")] = "main",
    pick: Annotated[
        str | None, typer.Option("--pick", help="Use this file instead of the rule's choice.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing recipe of that name.")
    ] = False,
    json_output: JsonFlag = False,
    recipes_dir: Annotated[
        Path | None, typer.Option("--recipes-dir", help="Where to write the recipe (default: ./recipes).")
    ] = None,
) -> None:
    """Judge a Hub repo's model files for a canister kind (headers only) and write a recipe for the best."""
    from pipeline.pick.recipe import new_recipe
    from pipeline.pick.report import human_report

    result = new_recipe(
        repo_id, kind=kind, name=name, revision=revision, pick_file=pick, force=force, recipes_dir=recipes_dir
    )
    Output(json=json_output).result(result.to_json(), human_report(result))
