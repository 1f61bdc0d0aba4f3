"""Progress events: each stage reports what it does as a dict with an `event` field (e.g. `stage`, `file`,
`chunk`, `step`) handed to a sink its caller owns; the CLI prints them as JSON lines with --json."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EventSink = Callable[[dict[str, Any]], None]
