"""The one retry policy for every network wait: backoff, the resend interval and one time budget.

Reads (status, query, read_state) retry transient failures until the budget runs out, then give up
with an error naming the URL, what was tried and what to check. Update calls resend their one signed
envelope on the same backoff until the outcome is certified or the call expires. While a wait lasts
longer than a few seconds, `Waits` says so on stderr, so a hung replica or Hub is never silent.
"""

from __future__ import annotations

import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from pipeline.errors import UsageError

BUDGET_ENV = "PREP_NETWORK_TIMEOUT"
DEFAULT_BUDGET_S = 60.0
_MAX_BUDGET_S = 24 * 3600.0


def network_budget_s(environ: Mapping[str, str] | None = None) -> float:
    """Seconds any one network read may take, retries included: $PREP_NETWORK_TIMEOUT or 60."""
    raw = (os.environ if environ is None else environ).get(BUDGET_ENV, "").strip()
    if not raw:
        return DEFAULT_BUDGET_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value <= _MAX_BUDGET_S:
        raise UsageError(
            f"{BUDGET_ENV}={raw!r} is not a number of seconds between 0 and {_MAX_BUDGET_S:.0f}",
            hint=f"e.g. {BUDGET_ENV}=60 (the default), or unset it",
        )
    return value


def say_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class RetryPolicy:
    """Delays for transient errors (exponential, jittered) and for polls of a call in progress.

    `budget_s` bounds every read; `resend_after_s` is how long an accepted call may stay unknown to
    the replica before its envelope is sent again; `refused_patience_s` is how long a refused
    connection is retried (nothing listening rarely starts listening); `notice_after_s` is when a
    wait is first reported on stderr, then every `notice_every_s`.
    """

    budget_s: float = field(default_factory=network_budget_s)
    first_delay_s: float = 0.1
    max_delay_s: float = 4.0
    poll_first_s: float = 0.005
    poll_max_s: float = 0.5
    resend_after_s: float = 2.0
    refused_patience_s: float = 10.0
    connect_timeout_s: float = 10.0
    notice_after_s: float = 5.0
    notice_every_s: float = 10.0

    def error_delay(self, attempt: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.max_delay_s, self.first_delay_s * 2 ** min(attempt, 30))

    def poll_delay(self, attempt: int) -> float:
        return min(self.poll_max_s, self.poll_first_s * 1.5 ** min(attempt, 60))

    def setting(self) -> str:
        """How the user changes the budget, for hints."""
        return f"{BUDGET_ENV} (now {self.budget_s:g} s)"


@dataclass
class Wait:
    """One wait in progress; `cause` (the last error, if any) goes into its notices."""

    what: str
    until: str
    started: float
    next_notice: float
    quiet_s: float
    cause: str = ""

    def alive(self) -> None:
        """The other side showed a sign of life: the wait starts over (a moving download is no wait)."""
        self.started = time.monotonic()
        self.next_notice = self.started + self.quiet_s


class Waits:
    """Reports waits that last: one daemon thread, started on first use, checks twice a second.

    Cheap for the many short requests of an upload (a dict insert and delete each); a line per wait
    and `notice_every_s`, never one per thread, so a window of 32 hung requests prints one line.
    """

    def __init__(self, policy: RetryPolicy, say: Callable[[str], None] = say_on_stderr) -> None:
        self._policy = policy
        self._say = say
        self._lock = threading.Lock()
        self._waits: dict[int, Wait] = {}
        self._next_id = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @contextmanager
    def watch(
        self, what: str, *, until: str | None = None, quiet_for_s: float | None = None
    ) -> Iterator[Wait]:
        """Reports `what` while the block runs past `quiet_for_s`; `until` says when it ends."""
        now = time.monotonic()
        # With a short budget the notice comes sooner, so a wait is reported before it gives up.
        first = (
            min(self._policy.notice_after_s, self._policy.budget_s / 2)
            if quiet_for_s is None
            else quiet_for_s
        )
        limit = until or f"gives up after {self._policy.budget_s:g} s ({BUDGET_ENV})"
        wait = Wait(what, limit, now, now + first, first)
        with self._lock:
            key = self._next_id
            self._next_id += 1
            self._waits[key] = wait
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="prep-waits", daemon=True)
                self._thread.start()
        try:
            yield wait
        finally:
            with self._lock:
                del self._waits[key]

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for line in self._due(time.monotonic()):
                self._say(line)

    def _due(self, now: float) -> list[str]:
        lines: dict[str, str] = {}
        with self._lock:
            for wait in self._waits.values():
                if now < wait.next_notice:
                    continue
                wait.next_notice = now + self._policy.notice_every_s
                if wait.what not in lines:
                    cause = f"; last error: {wait.cause}" if wait.cause else ""
                    elapsed = now - wait.started
                    lines[wait.what] = f"still waiting for {wait.what} ({elapsed:.0f} s{cause}); {wait.until}"
        return list(lines.values())
