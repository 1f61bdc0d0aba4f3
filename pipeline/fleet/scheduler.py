"""Runs one piece of work per canister of a fleet, all at once, with one flow controller per subnet.

Each canister's work runs in its own thread with its own journal, lock and report (the upload engine's,
as for a single canister). The canisters of one subnet share that subnet's FlowControl, which grants
chunk calls first come, first served, so together they keep the subnet's blocks full without one
starving another; subnets do not wait for each other. A canister that fails is recorded with its
reason and the others go on; each resumes alone when the command is run again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.errors import PrepError, UsageError
from pipeline.events import EventSink
from pipeline.fleet.confirm import Ask, OneQuestion
from pipeline.fleet.members import FleetTarget, Unreachable
from pipeline.fleet.summary import CanisterRow, FleetReport
from pipeline.upload.flow import FlowControl


@dataclass(frozen=True)
class Assignment:
    """What one canister's work gets: its subnet's flow (its chunk calls), its share of the subnet's
    window for its read-back queries, which no flow covers, an event sink that tags every event with the
    canister and its subnet, its row to fill in, and the fleet's one mainnet question."""

    flow: FlowControl
    read_window: int
    emit: EventSink
    row: CanisterRow
    confirm: Ask


MIN_READ_WINDOW = 2  # an upload with a window of 1 would go in strict order, one call at a time
Work = Callable[[FleetTarget, Assignment], None]


def run_fleet(
    targets: Sequence[FleetTarget],
    unreachable: Sequence[Unreachable],
    work: Work,
    *,
    window: int,
    on_event: EventSink,
    ask: Ask | None = None,
) -> FleetReport:
    """`work(target, assignment)` fills the row and raises PrepError when the canister fails."""
    started = time.monotonic()
    flows = {subnet: FlowControl(window) for subnet in dict.fromkeys(t.subnet for t in targets)}
    on_subnet = Counter(t.subnet for t in targets)
    mainnet = {t.canister_id for t in targets if t.client.network.is_mainnet}
    question = OneQuestion(mainnet, ask or (lambda _totals: False))
    emit = _serialized(on_event)
    rows = [CanisterRow(u.member.canister, u.canister_id, "", reason=u.reason) for u in unreachable]
    for item in unreachable:
        emit({"event": "failed", "canister": item.canister_id, "subnet": None, "reason": item.reason})
    threads = []
    for target in targets:
        row = CanisterRow(target.name, target.canister_id, target.subnet)
        rows.append(row)
        # Peak memory grows with the chunks in flight: chunk calls are bounded per subnet by its flow, and
        # read-backs (a canister's concurrent queries) by this share of the window (bench/fleet.py).
        read_window = max(MIN_READ_WINDOW, -(-window // on_subnet[target.subnet]))
        assignment = Assignment(
            flows[target.subnet],
            read_window,
            _tagged(emit, target),
            row,
            question.confirm_for(target.canister_id),
        )
        thread = threading.Thread(
            target=_run_one, args=(work, target, assignment, question), name=f"fleet-{target.name}"
        )
        thread.daemon = True  # Ctrl-C ends the command; every journal is durable as after kill -9
        thread.start()
        threads.append(thread)
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)
    order = {t.canister_id: i for i, t in enumerate(targets)}
    rows.sort(key=lambda r: order.get(r.canister_id, -1))
    return FleetReport(rows, time.monotonic() - started)


def _run_one(work: Work, target: FleetTarget, assignment: Assignment, question: OneQuestion) -> None:
    row = assignment.row
    started = time.monotonic()
    try:
        work(target, assignment)
        row.ok = True
    except PrepError as err:
        row.reason = err.message.splitlines()[0]
        row.bad_input = isinstance(err, UsageError)
    except Exception as err:  # a bug must not take the other canisters down with it
        row.reason = f"unexpected {type(err).__name__}: {err}"
    finally:
        question.ended(target.canister_id)
        row.seconds = round(time.monotonic() - started, 3)
    if row.ok:
        assignment.emit({"event": "finished", "seconds": row.seconds})
    else:
        assignment.emit({"event": "failed", "reason": row.reason})


def _tagged(emit: EventSink, target: FleetTarget) -> EventSink:
    def tag(event: dict[str, Any]) -> None:
        emit({**event, "canister": target.canister_id, "subnet": target.subnet})

    return tag


def _serialized(emit: EventSink) -> EventSink:
    """Events come from every canister's threads; the sink sees one at a time."""
    lock = threading.Lock()

    def send(event: dict[str, Any]) -> None:
        with lock:
            emit(event)

    return send
