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
