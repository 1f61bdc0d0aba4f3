"""Fault injection: the failures a real replica or boundary node shows, on demand."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from tests.icsim.principal import from_text


@dataclass
class _Armed:
    remaining: int
    method: str | None = None
    status: int = 503
    seconds: float = 0.0
    endpoint: str | None = None


@dataclass(frozen=True)
class TrapRule:
    canister_id: bytes
    method: str
    nth: int


class Faults:
    """Armed faults; each fires for the next `n` matching requests, then disarms itself."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drops: list[_Armed] = []
        self._errors: list[_Armed] = []
        self._delays: list[_Armed] = []
        self._traps: dict[tuple[bytes, str], list[int]] = {}  # (canister, method) -> [nth, times]
        self._out_of_cycles: set[bytes] = set()
        self._forgeries: list[_Armed] = []
        self.fired: dict[str, int] = {"drop": 0, "http_error": 0, "delay": 0, "trap": 0, "forge": 0}

    def drop_replies(self, n: int, method: str | None = None) -> None:
        """Execute the next n calls (of `method`, if given), then close the connection without a reply."""
        with self._lock:
            self._drops.append(_Armed(n, method=method))

    def http_errors(self, n: int, status: int = 503, endpoint: str | None = None) -> None:
        """Answer the next n requests (to `endpoint`: call|query|read_state, if given) with `status`
        and do NOT execute them."""
        with self._lock:
            self._errors.append(_Armed(n, status=status, endpoint=endpoint))

    def delay_replies(self, n: int, seconds: float, method: str | None = None) -> None:
        """Execute the next n calls but hold the reply back for `seconds` (past a client's timeout)."""
        with self._lock:
            self._delays.append(_Armed(n, method=method, seconds=seconds))

    def forge_query_signatures(self, n: int, method: str | None = None) -> None:
        """Answer the next n queries (of `method`, if given) with a signature by a key that is not the
        node's (a lying node or boundary node); the answer itself is the true one."""
        with self._lock:
            self._forgeries.append(_Armed(n, method=method))

    def trap_on_call(self, canister_id: str | bytes, method: str, nth: int = 1, times: int = 1) -> None:
        """Make the nth call of `method` on that canister (from now on) trap instead of running, and the
        `times - 1` calls after it too (a trap that a client's retries meet again)."""
        raw = canister_id if isinstance(canister_id, bytes) else from_text(canister_id)
        with self._lock:
            self._traps[(raw, method)] = [nth, times]

    def out_of_cycles(self, canister_id: str | bytes, exhausted: bool = True) -> None:
        """Make the canister refuse messages (IC0207) until called again with exhausted=False."""
        raw = canister_id if isinstance(canister_id, bytes) else from_text(canister_id)
        with self._lock:
            if exhausted:
                self._out_of_cycles.add(raw)
            else:
                self._out_of_cycles.discard(raw)

    def is_out_of_cycles(self, canister_id: bytes) -> bool:
        with self._lock:
            return canister_id in self._out_of_cycles

    def clear(self) -> None:
        with self._lock:
            self._out_of_cycles.clear()
            self._drops.clear()
            self._errors.clear()
            self._delays.clear()
            self._traps.clear()
            self._forgeries.clear()

    # ---- used by the server / replica ------------------------------------------

    def take_http_error(self, endpoint: str) -> int | None:
        with self._lock:
            armed = _take(self._errors, lambda a: a.endpoint in (None, endpoint))
            if armed is None:
                return None
            self.fired["http_error"] += 1
            return armed.status

    def take_drop(self, method: str) -> bool:
        with self._lock:
            armed = _take(self._drops, lambda a: a.method in (None, method))
            if armed is not None:
                self.fired["drop"] += 1
            return armed is not None

    def take_delay(self, method: str) -> float:
        with self._lock:
            armed = _take(self._delays, lambda a: a.method in (None, method))
            if armed is None:
                return 0.0
            self.fired["delay"] += 1
            return armed.seconds

    def take_forgery(self, method: str) -> bool:
        with self._lock:
            armed = _take(self._forgeries, lambda a: a.method in (None, method))
            if armed is not None:
                self.fired["forge"] += 1
            return armed is not None

    def take_trap(self, canister_id: bytes, method: str) -> bool:
        with self._lock:
            key = (canister_id, method)
            armed = self._traps.get(key)
            if armed is None:
                return False
            armed[0] -= 1
            if armed[0] > 0:
                return False
            armed[1] -= 1
            if armed[1] > 0:
                armed[0] = 1
            else:
                del self._traps[key]
            self.fired["trap"] += 1
            return True


def _take(armed_list: list[_Armed], matches) -> _Armed | None:
    for armed in armed_list:
        if matches(armed):
            armed.remaining -= 1
            if armed.remaining <= 0:
                armed_list.remove(armed)
            return armed
    return None
