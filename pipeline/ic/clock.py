"""The time requests are stamped with: this machine's clock, corrected by the replica's when they disagree.

A request's ingress expiry must fall within about five minutes after the replica's own time, so a local
clock ten minutes off gets every request refused. Like DFINITY's agents, the client then takes the
time from the replica's certified state (a verified certificate's `time`) and says so once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pipeline.ic.retry import say_on_stderr

NS_PER_S = 1_000_000_000
# Certificates are made a block or two before they reach us: disagreements below this are ordinary.
DISAGREEMENT_TOLERANCE_NS = 30 * NS_PER_S


class ReplicaClock:
    """`now_ns()` is the local clock plus the offset learned from the first disagreeing certificate."""

    def __init__(
        self, local: Callable[[], int] = time.time_ns, say: Callable[[str], None] = say_on_stderr
    ) -> None:
        self._local = local
        self._say = say
        self._lock = threading.Lock()
        self.offset_ns = 0
        self.corrected = False

    def now_ns(self) -> int:
        return self._local() + self.offset_ns

    def local_ns(self) -> int:
        return self._local()

    def observe(self, certified_ns: int, source: str) -> None:
        """A verified certificate's time: adopted, once, when the local clock is off by more than 30 s."""
        with self._lock:
            if self.corrected:
                return
            offset = certified_ns - self._local()
            if abs(offset) <= DISAGREEMENT_TOLERANCE_NS:
                return
            self.offset_ns = offset
            self.corrected = True
        direction = "behind" if offset > 0 else "ahead of"
        self._say(
            f"this machine's clock is {abs(offset) / NS_PER_S:.0f} s {direction} the certified time of "
            f"{source}; prep uses the replica's time for request expiries (fix the clock to silence this)"
        )
