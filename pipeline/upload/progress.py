"""Upload progress: a tqdm bar on a terminal (bytes, MB/s, ETA, re-sent chunks) and/or JSON events.

Events (one dict each, `event` names the kind): plan, resume, chunk, retry, verify, step, restart, done.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from tqdm import tqdm

from pipeline.events import EventSink


class UploadProgress:
    """Thread-safe; `emit` receives every event (the CLI prints them with --json)."""

    def __init__(self, emit: EventSink | None = None, *, bar: bool | None = None) -> None:
        self._emit = emit
        self._show_bar = sys.stderr.isatty() if bar is None else bar
        self._bar: tqdm | None = None
        self._lock = threading.Lock()
        self.resent = 0
        self.retries = 0

    def event(self, name: str, **fields: Any) -> None:
        if self._emit is not None:
            with self._lock:
                self._emit({"event": name, **fields})

    def begin_file(self, label: str, total: int, already: int) -> None:
        if self._show_bar:
            self._bar = tqdm(
                total=total, initial=already, desc=label, unit="B", unit_scale=True, unit_divisor=1000,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
            )  # fmt: skip

    def chunk(self, role: str, index: int, length: int, *, resent: bool, **fields: Any) -> None:
        with self._lock:
            if resent:
                self.resent += 1
            if self._bar is not None:
                self._bar.update(length)
                if self.resent:
                    self._bar.set_postfix(resent=self.resent, refresh=False)
        self.event("chunk", role=role, index=index, bytes=length, resent=resent, **fields)

    def retry(self, role: str, reason: str) -> None:
        with self._lock:
            self.retries += 1
        self.event("retry", role=role, reason=reason)

    def end_file(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def describe_event(event: dict[str, Any]) -> str | None:
    """One line of human text for the events worth narrating without --json (chunks show in the bar)."""
    name = event["event"]
    if name == "plan":
        return (
            f"{event['kind']} canister {event['canister']} on {event['url']}: {event['bytes']:,} bytes in "
            f"{event['messages']} message{'' if event['messages'] == 1 else 's'} "
            f"(~{event['estimated_cycles'] / 1e12:.3f} T cycles)"
        )
    if name == "resume":
        if event.get("action") == "settled":
            state = "landed" if event["executed"] else "did not land"
            call = (
                f"chunk {event['chunk']}" if event.get("chunk") is not None else f"step {event.get('method')}"
            )
            return f"{event['role']}: {call} in flight at the last run {state}"
        if event.get("action") == "restore":
            return f"{event['role']}: kept in stable memory, restoring it ({event.get('reason')})"
        if event.get("action") == "continue":
            done = event.get("bytes_done", event.get("chunks_done"))
            unit = "bytes" if "bytes_done" in event else "chunks"
            return f"{event['role']}: resuming, {done:,} {unit} already in the canister"
        if event.get("action") == "reverify":
            return f"{event['role']}: reading the file back to resend what differs ({event.get('reason')})"
        return f"{event['role']}: starting over ({event.get('reason')})"
    if name == "restart":
        return f"starting over: {event['reason']}"
    if name == "verify" and not event["ok"]:
        return f"{event['role']}: read-back found {len(event['bad_chunks'])} chunk(s) to send again"
    if name == "waiting":
        who = f"process {event['holder']}" if event.get("holder") else "another process"
        return f"waiting for {who}, which is uploading the same file ({event['lock']})"
    if name == "steps_skipped":
        return f"not loading yet: upload {', '.join(event['missing'])} too, then the steps run"
    if name == "step":
        return f"{event['method']}" + (f" ({event['role']})" if event.get("role") else "")
    if name == "budget":
        if not event["checked"]:
            return f"{event['reason']} (estimated cost ~{event['estimated_cycles'] / 1e12:.3f} T cycles)"
        return (
            f"cycles: ~{event['estimated_cycles'] / 1e12:.3f} T needed, {event['balance'] / 1e12:.3f} T "
            f"balance ({event['freezing_reserve'] / 1e12:.3f} T freezing reserve); "
            f"heap ~{event['heap_needed']:,} bytes"
            + (" (too few cycles: going on as --ignore-cycles says)" if event["ignored"] else "")
        )
    if name == "settings":
        return f"set wasm_memory_limit of {event['canister']} to {event['wasm_memory_limit']:,} bytes"
    return None
