"""Backoff with jitter, and retries of idempotent reads (queries, read_state) on transient failures."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pipeline.ic.errors import TransientIcError

T = TypeVar("T")


@dataclass
class Backoff:
    """Exponential backoff with jitter for transient errors; short polls while a call executes."""

    first_s: float = 0.1
    cap_s: float = 8.0
    poll_first_s: float = 0.005
    poll_cap_s: float = 0.5

    def error_delay(self, attempt: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.cap_s, self.first_s * 2**attempt)

    def poll_delay(self, attempt: int) -> float:
        return min(self.poll_cap_s, self.poll_first_s * 1.5**attempt)


def read_with_retries(read: Callable[[], T], *, backoff: Backoff | None = None, attempts: int = 10) -> T:
    """Runs an idempotent read (query, read_state), retrying transient failures with backoff."""
    backoff = backoff or Backoff()
    for attempt in range(attempts - 1):
        try:
            return read()
        except TransientIcError:
            time.sleep(backoff.error_delay(attempt))
    return read()
