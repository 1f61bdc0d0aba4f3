"""Where command output goes: results on stdout (JSON lines with --json), human text on stderr."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer

JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Machine-readable output: one JSON object per line on stdout."),
]


@dataclass(frozen=True)
class Output:
    """Routes a command's output. With `json`, stdout carries only JSON lines."""

    json: bool = False

    def result(self, data: dict[str, Any], human: str) -> None:
        """The command's answer: `data` as one JSON line, or `human` text on stdout."""
        if self.json:
            self.event({"event": "result", **data})
        else:
            print(human, flush=True)

    def event(self, data: dict[str, Any]) -> None:
        """One progress or state event; only shown with --json."""
        if self.json:
            sys.stdout.write(json.dumps(data, sort_keys=True, default=str) + "\n")
            sys.stdout.flush()

    def info(self, text: str) -> None:
        """Human-oriented status text; always on stderr so stdout stays parseable."""
        print(text, file=sys.stderr, flush=True)

    def error(self, text: str) -> None:
        if self.json:
            self.event({"event": "error", "message": text})
        print(f"error: {text}", file=sys.stderr, flush=True)
