"""Flow control: how many chunk calls may be in flight at once toward one subnet.

Every chunk call of an upload holds a slot from its first submission until its outcome is certified.
One controller serves one subnet; the canisters of a fleet on that subnet share it, and slots are
granted first come, first served, so no canister starves the others. The window adapts to what the
acknowledgements measure (see pipeline.upload.congestion); `limit` bounds it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.upload.congestion import AdaptiveWindow


@dataclass
class Slot:
    """One chunk call's place in the window: when it was granted and how many bytes it carries."""

    nbytes: int
    granted_at: float = field(default_factory=time.monotonic)
    acknowledged: bool = False


class FlowControl:
    """A window of at most `limit` calls in flight, granted in arrival order.

    `adaptive=False` holds the window at `limit` (benchmarks compare with it); `clock` is injectable
    for tests and must be the clock of `Slot.granted_at` (time.monotonic).
    """

    def __init__(
        self, limit: int, *, adaptive: bool = True, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1:
            raise ValueError(f"a window holds at least one call, not {limit}")
        self.limit = limit
        self._clock = clock
        self._control = AdaptiveWindow(limit) if adaptive else None
        self._in_flight = 0
        self._waiting: deque[object] = deque()
        self._changed = threading.Condition()
        self.peak = 0

    @property
    def window(self) -> int:
        """How many calls may be in flight now."""
        return self.limit if self._control is None else self._control.window

    def acquire(self, nbytes: int) -> Slot:
        """Blocks until the window admits one more call, in arrival order."""
        turn = object()
        with self._changed:
            self._waiting.append(turn)
            while self._waiting[0] is not turn or self._in_flight >= self.window:
                self._changed.wait()
            self._waiting.popleft()
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
            self._changed.notify_all()
        return Slot(nbytes, self._clock())

    def release(self, slot: Slot) -> None:
        """The call is over: acknowledged when `slot.acknowledged` was set, else failed or abandoned."""
        with self._changed:
            self._in_flight -= 1
            if slot.acknowledged and self._control is not None:
                now = self._clock()
                self._control.acknowledged(now, slot.nbytes, now - slot.granted_at)
            self._changed.notify_all()

    def overloaded(self) -> None:
        """The replica refused a call for load (HTTP 429/503, a full ingress pool): the window shrinks."""
        if self._control is None:
            return
        with self._changed:
            self._control.overloaded(self._clock())

    @property
    def waiting(self) -> int:
        """Callers blocked in `acquire`."""
        with self._changed:
            return len(self._waiting)

    @property
    def in_flight(self) -> int:
        with self._changed:
            return self._in_flight

    def stats(self) -> dict[str, Any]:
        with self._changed:
            measured = {} if self._control is None else self._control.stats(self._clock())
            return {
                "window": self.window,
                "peak_in_flight": self.peak,
                "adaptive": self._control is not None,
            } | measured
