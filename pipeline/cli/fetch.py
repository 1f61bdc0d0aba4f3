"""`prep fetch`: download a recipe's files (or files of any Hub repo), verify sha256, write the lock."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.output import JsonFlag, Output
from pipeline.errors import UsageError

if TYPE_CHECKING:
    from pipeline.hub import FetchResult


def fetch_command(
    target: Annotated[
        str, typer.Argument(help="Recipe name, path to a recipe .toml, or a Hub repo id with --file.")
    ],
    files: Annotated[
        list[str] | None,
        typer.Option("--file", "-f", help="With a repo id: file name or glob pattern to fetch (repeatable)."),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="With a repo id: branch, tag or commit (default main).")
    ] = None,
    locked: Annotated[
        bool, typer.Option("--locked", help="Refuse anything that differs from the lock file.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Download and verify files; writes <recipe>.lock.json (or enforces it with --locked)."""
    from pipeline.hub import fetch_recipe, fetch_repo
    from pipeline.recipes import is_repo_id, load_recipe
    from pipeline.workspace import Workspace

    out = Output(json=json_output)
    workspace = Workspace.default()
    if files:
        if not is_repo_id(target):
            raise UsageError(
                f"{target!r} is not a Hugging Face repo id",
                hint="with --file, give OWNER/NAME (e.g. karpathy/tinyllamas); without --file, a recipe",
            )
        if not all(pattern.strip() for pattern in files):
            raise UsageError("--file needs a file name or glob pattern", hint="e.g. --file '*.gguf'")
        result = fetch_repo(
            target,
            files,
            revision or "main",
            locked=locked,
            progress=not json_output,
            workspace=workspace,
            on_event=out.event,
        )
    else:
        if revision is not None:
            raise UsageError("--revision goes with a repo id and --file; a recipe sets its own revision")
        if _looks_like_repo_id(target):
            raise UsageError(
                f"{target!r} is neither a recipe name nor a recipe file",
                hint=f"to fetch files of the Hub repo {target}, add --file PATTERN",
            )
        recipe = load_recipe(target)
        result = fetch_recipe(
            recipe, locked=locked, progress=not json_output, workspace=workspace, on_event=out.event
        )
    out.result(_result_json(result), _human(result))


def _looks_like_repo_id(target: str) -> bool:
    return target.count("/") == 1 and not target.endswith(".toml") and not Path(target).exists()


def _result_json(result: FetchResult) -> dict[str, object]:
    return {
        "lock": str(result.lock_path),
        "offline": result.offline,
        "files": {name: f.to_json() for name, f in sorted(result.files.items())},
    }


def _human(result: FetchResult) -> str:
    lines = [f"{f.path}  {f.size} B  sha256 {f.sha256}" for _, f in sorted(result.files.items())]
    lines.append(
        f"lock: {result.lock_path}" + (" (offline: served from the cache)" if result.offline else "")
    )
    return "\n".join(lines)
