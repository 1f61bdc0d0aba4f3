"""Where stages keep their files: <root>/<recipe>/<stage>/, root from $PREP_WORKDIR or ./work."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.atomic import write_atomic
from pipeline.errors import UsageError

WORKDIR_ENV = "PREP_WORKDIR"
DEFAULT_WORKDIR = "work"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def default(cls) -> Workspace:
        """$PREP_WORKDIR or ./work; refused at once when it names something that is not a folder."""
        root = Path(os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR)
        if root.exists() and not root.is_dir():
            origin = f"${WORKDIR_ENV}" if os.environ.get(WORKDIR_ENV) else "the work folder"
            raise UsageError(
                f"{origin} {root} is a file, not a folder",
                hint=f"point ${WORKDIR_ENV} at a folder (it is created when missing)",
            )
        return cls(root)

    def recipe_dir(self, recipe_name: str) -> Path:
        return self.root / recipe_name

    def stage_dir(self, recipe_name: str, stage: str) -> Path:
        """The directory of one stage of one recipe, created on first use."""
        path = self.root / recipe_name / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def download_cache(self) -> Path:
        """Shared cache for URL downloads (Hub files live in the Hugging Face cache instead)."""
        path = self.root / ".downloads"
        path.mkdir(parents=True, exist_ok=True)
        return path


def dump_json(data: Any) -> bytes:
    """Deterministic JSON: sorted keys, two-space indent, trailing newline."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, dump_json(data))
