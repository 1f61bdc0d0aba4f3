"""Lock files: the resolved commit and the sha256 and size of every fetched file, per source."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError
from pipeline.recipes import HubSource, Source, UrlSource
from pipeline.workspace import write_json_atomic

LOCK_VERSION = 1


@dataclass(frozen=True)
class LockedFile:
    sha256: str
    size: int


@dataclass(frozen=True)
class LockedSource:
    """What one source resolved to. `key` identifies the source as the recipe declares it."""

    key: str
    commit: str | None
    files: dict[str, LockedFile] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "commit": self.commit,
            "files": {n: {"sha256": f.sha256, "size": f.size} for n, f in sorted(self.files.items())},
        }


@dataclass(frozen=True)
class Lock:
    name: str
    sources: tuple[LockedSource, ...]

    def source(self, key: str) -> LockedSource | None:
        return next((s for s in self.sources if s.key == key), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "lock_version": LOCK_VERSION,
            "name": self.name,
            "sources": [s.to_json() for s in self.sources],
        }


def source_key(source: Source) -> str:
    """A stable text naming the source as declared, so a changed recipe no longer matches its lock."""
    if isinstance(source, UrlSource):
        return f"url:{source.url}"
    assert isinstance(source, HubSource)
    return f"hf:{source.repo}@{source.revision}:" + ",".join(source.files)


def write_lock(path: Path, lock: Lock) -> None:
    write_json_atomic(path, lock.to_json())


def read_lock(path: Path) -> Lock | None:
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("lock_version") != LOCK_VERSION:
            raise ValueError(f"lock_version {data.get('lock_version')!r}, expected {LOCK_VERSION}")
        sources = tuple(
            LockedSource(
                key=s["key"],
                commit=s["commit"],
                files={n: LockedFile(f["sha256"], int(f["size"])) for n, f in s["files"].items()},
            )
            for s in data["sources"]
        )
        return Lock(name=data["name"], sources=sources)
    except (ValueError, KeyError, TypeError) as err:
        raise PrepError(
            f"{path}: not a valid lock file ({err})",
            hint="delete it and fetch without --locked to rewrite it",
        ) from err


@dataclass(frozen=True)
class LockChange:
    """One difference between two locks of a recipe: a source's commit, or one file's size and sha256."""

    source: str  # the source as a person reads it: repo@revision or the URL
    change: str  # "declaration", "commit", "added", "removed", "changed", "source added", "source removed"
    file: str | None = None
    before: LockedFile | str | None = None  # a commit, a source key (declaration), or the file as locked
    after: LockedFile | str | None = None

    def to_json(self) -> dict[str, Any]:
        def plain(value: LockedFile | str | None) -> Any:
            return {"sha256": value.sha256, "size": value.size} if isinstance(value, LockedFile) else value

        return {
            "source": self.source,
            "change": self.change,
            "file": self.file,
            "before": plain(self.before),
            "after": plain(self.after),
        }

    def describe(self) -> str:
        if self.change == "commit":
            return f"{self.source}: commit {self.before or 'none'} -> {self.after or 'none'}"
        if self.change == "declaration":
            return f"{self.source}: the recipe now declares {self.after} (was {self.before})"
        if self.change in ("source added", "source removed"):
            return f"{self.source}: {self.change}"
        if self.change == "changed":
            assert isinstance(self.before, LockedFile) and isinstance(self.after, LockedFile)
            return (
                f"{self.source}: ~ {self.file}: {self.before.size:,} -> {self.after.size:,} B, "
                f"sha256 {self.before.sha256} -> {self.after.sha256}"
            )
        mark, file = ("+", self.after) if self.change == "added" else ("-", self.before)
        assert isinstance(file, LockedFile)
        return f"{self.source}: {mark} {self.file}: {file.size:,} B, sha256 {file.sha256}"


def source_label(key: str) -> str:
    """repo@revision for a Hub source key, the URL for a URL source key."""
    if key.startswith("url:"):
        return key[len("url:") :]
    return key[len("hf:") :].split(":", 1)[0]


def diff_locks(old: Lock | None, new: Lock) -> list[LockChange]:
    """What changed from `old` (None: no lock yet) to `new`: commits, then files added, removed, changed.

    Sources are paired by their declaration; one whose declaration changed (another revision or other
    file patterns) is paired with the old entry for the same repo or URL, so its files still diff.
    """
    changes: list[LockChange] = []
    unpaired = list(old.sources) if old else []
    for source in new.sources:
        before = _pair(source.key, unpaired)
        label = source_label(source.key)
        if before is None:
            if old is not None:
                changes.append(LockChange(label, "source added"))
            changes += [LockChange(label, "added", n, None, f) for n, f in sorted(source.files.items())]
            continue
        unpaired.remove(before)
        if before.key != source.key:
            changes.append(LockChange(label, "declaration", None, before.key, source.key))
        if before.commit != source.commit:
            changes.append(LockChange(label, "commit", None, before.commit, source.commit))
        for name in sorted(set(before.files) | set(source.files)):
            was, now = before.files.get(name), source.files.get(name)
            if was == now:
                continue
            change = "added" if was is None else "removed" if now is None else "changed"
            changes.append(LockChange(label, change, name, was, now))
    for gone in unpaired:
        changes.append(LockChange(source_label(gone.key), "source removed"))
    return changes


def _pair(key: str, candidates: list[LockedSource]) -> LockedSource | None:
    exact = next((s for s in candidates if s.key == key), None)
    if exact is not None:
        return exact
    origin = _origin(key)
    return next((s for s in candidates if _origin(s.key) == origin), None)


def _origin(key: str) -> str:
    """The repo (Hub) or URL a source key points at, without its revision and patterns."""
    return key if key.startswith("url:") else source_label(key).rsplit("@", 1)[0]
