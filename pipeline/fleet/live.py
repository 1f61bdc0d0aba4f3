"""The fleet's live view on stderr: on a terminal one line per canister, redrawn in place (bytes, share,
MB/s, what it does now); without a terminal, plain lines for the events worth a line."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from pipeline.fleet.members import FleetTarget
from pipeline.upload.progress import describe_event

REDRAW_EVERY_S = 0.5
BAR_WIDTH = 20


@dataclass
class _Line:
    name: str
    subnet: str
    total: int = 0
    sent: int = 0
    state: str = "waiting"
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None


class FleetView:
    """An EventSink for the scheduler's tagged events; `close()` draws the last state."""

    def __init__(
        self, targets: Sequence[FleetTarget], stream: TextIO | None = None, *, live: bool | None = None
    ):
        self._stream = stream or sys.stderr
        self._live = self._stream.isatty() if live is None else live
        self._lines = {t.canister_id: _Line(t.name, t.subnet) for t in targets}
        self._lock = threading.Lock()
        self._drawn = 0
        self._last_draw = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        with self._lock:
            line = self._lines.get(event.get("canister", ""))
            if line is None:
                text = describe_event(event) or event.get("reason")
                if text:
                    self._write(f"{event.get('canister')}: {text}")
                return
            self._follow(line, event)
            if self._live:
                self._redraw(force=event["event"] in ("finished", "failed"))

    def close(self) -> None:
        with self._lock:
            if self._live:
                self._redraw(force=True)

    def _follow(self, line: _Line, event: dict[str, Any]) -> None:
        name = event["event"]
        if name == "plan":
            line.total, line.state = event["bytes"], "sending"
        elif name == "chunk":
            line.sent += event["bytes"]
        elif name == "step":
            line.state = event["method"]
        elif name == "verify":
            line.state = "verifying"
        elif name == "finished":
            line.state, line.ended = "ok", time.monotonic()
        elif name == "failed":
            line.state, line.ended = f"FAILED: {event['reason']}", time.monotonic()
        if self._live:
            return
        text = (
            event.get("reason")
            if name == "failed"
            else ("done" if name == "finished" else describe_event(event))
        )
        if text:
            self._write(f"{line.name} [{line.subnet[:11]}]: {text}")

    def _redraw(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_draw < REDRAW_EVERY_S:
            return
        self._last_draw = now
        width = max(len(x.name) for x in self._lines.values())
        rows = [self._row(x, width, now) for x in self._lines.values()]
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self._stream.write(up + "".join(f"{row}\x1b[K\n" for row in rows))
        self._stream.flush()
        self._drawn = len(rows)

    @staticmethod
    def _row(line: _Line, width: int, now: float) -> str:
        share = line.sent / line.total if line.total else 0.0
        filled = min(BAR_WIDTH, int(share * BAR_WIDTH))
        rate = line.sent / max((line.ended or now) - line.started, 1e-9) / 1e6
        return (
            f"{line.name:<{width}} {line.subnet[:11]:<11} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{share:4.0%} {line.sent / 1e6:9.1f} MB {rate:6.2f} MB/s  {line.state}"
        )

    def _write(self, text: str) -> None:
        self._stream.write(text + "\n")
        self._stream.flush()
