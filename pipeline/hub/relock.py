"""`prep lock`: resolve a recipe's sources now, compare with its lock file, and rewrite it (or only check).

The locks workflow (.github/workflows/locks.yml) runs this for every recipe and proposes the rewritten
locks in a pull request whose body is `locks_markdown`: a person reviews what moved before a release
may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError
from pipeline.events import EventSink
from pipeline.hub.fetch import resolve_lock
from pipeline.hub.lock import LockChange, LockedFile, diff_locks, read_lock, write_lock
from pipeline.recipes import Recipe
from pipeline.workspace import Workspace


@dataclass(frozen=True)
class LockUpdate:
    recipe: str
    path: Path
    status: str  # "new" (no lock yet), "unreadable" (replaced), "changed", "unchanged" or "failed"
    changes: tuple[LockChange, ...]
    written: bool
    error: str | None = None  # why the sources could not be resolved ("failed")

    @property
    def stale(self) -> bool:
        return self.status != "unchanged"

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "lock": str(self.path),
            "status": self.status,
            "written": self.written,
            "changes": [c.to_json() for c in self.changes],
            "error": self.error,
        }

    def describe(self) -> str:
        action = {
            "unchanged": "unchanged",
            "new": "written (no lock before)" if self.written else "missing",
            "unreadable": "rewritten (the old one was unreadable)" if self.written else "unreadable",
            "changed": "updated" if self.written else "stale",
            "failed": "not resolved",
        }[self.status]
        lines = [f"{self.recipe}: {self.path} {action}"]
        if self.error is not None:
            lines += [f"  {line}" for line in self.error.splitlines()]
        lines += [f"  {change.describe()}" for change in self.changes]
        return "\n".join(lines)


def lock_recipe(
    recipe: Recipe,
    *,
    check: bool = False,
    progress: bool = True,
    workspace: Workspace | None = None,
    on_event: EventSink | None = None,
) -> LockUpdate:
    """Resolves the recipe's sources and writes its lock when it differs (never with `check`).

    A source that cannot be resolved (Hub unreachable, a file gone upstream) gives a "failed" update
    naming the cause; the lock file is left as it was.
    """
    path = recipe.lock_path
    try:
        old = read_lock(path)
        status = "new" if old is None else "changed"
    except PrepError:
        old, status = None, "unreadable"
    try:
        new = resolve_lock(recipe, progress=progress, workspace=workspace, on_event=on_event)
    except PrepError as err:
        return LockUpdate(recipe.name, path, "failed", (), written=False, error=str(err))
    if old == new:
        return LockUpdate(recipe.name, path, "unchanged", (), written=False)
    if not check:
        write_lock(path, new)
    return LockUpdate(recipe.name, path, status, tuple(diff_locks(old, new)), written=not check)


def locks_markdown(updates: list[LockUpdate]) -> str:
    """The changes as Markdown: the body of the locks workflow's pull request."""
    changed = [u for u in updates if u.stale]
    lines = ["## Recipe lock changes", ""]
    if not changed:
        return "\n".join([*lines, "Every lock is up to date.", ""])
    lines += [
        "`prep lock --all` resolved every recipe's revision again. Review what moved: releases build "
        "exactly these commits and files (`prep release --locked`).",
        "",
    ]
    for update in changed:
        lines += [f"### {update.recipe} (`{update.path.name}`, {update.status})", ""]
        if update.error is not None:
            lines += ["```", update.error, "```", ""]
            continue
        lines += ["| source | change | file | before | after |", "|---|---|---|---|---|"]
        for c in update.changes:
            lines.append(
                f"| {_cell(c.source)} | {c.change} | {_cell(c.file)} | {_md(c.before)} | {_md(c.after)} |"
            )
        lines.append("")
    unchanged = [u.recipe for u in updates if not u.stale]
    if unchanged:
        lines += [f"Unchanged: {', '.join(unchanged)}.", ""]
    return "\n".join(lines)


def _md(value: LockedFile | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, LockedFile):
        return f"{value.size:,} B<br>`{value.sha256}`"
    return f"`{value}`"


def _cell(text: str | None) -> str:
    return "" if text is None else text.replace("|", "\\|")
