"""Where stages keep their files: <root>/<recipe>/<stage>/, root from $PREP_WORKDIR or ./work."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.atomic import write_atomic

WORKDIR_ENV = "PREP_WORKDIR"
DEFAULT_WORKDIR = "work"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def default(cls) -> Workspace:
        return cls(Path(os.environ.get(WORKDIR_ENV) or DEFAULT_WORKDIR))

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
