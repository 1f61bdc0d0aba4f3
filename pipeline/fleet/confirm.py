"""One mainnet question for a whole fleet.

Each canister's upload asks before its first mainnet byte (the engine's `confirm(plan)`). In a fleet the
uploads run at once, so the question waits until every mainnet canister has shown its plan (or ended
before it had one), then asks once with the totals; every upload gets the same answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Ask = Callable[[dict[str, Any]], bool]


class OneQuestion:
    """`ask(totals)` is called at most once, with bytes, canisters, messages and estimated_cycles."""

    def __init__(self, members: set[str], ask: Ask) -> None:
        self._waiting_for = set(members)  # canisters that may still show a mainnet plan
        self._plans: dict[str, dict[str, Any]] = {}
        self._ask = ask
        self._answer: bool | None = None
        self._changed = threading.Condition()

    def confirm_for(self, canister_id: str) -> Ask:
        """The engine's `confirm` for one canister's upload."""
        return lambda plan: self._confirm(canister_id, plan)

    def ended(self, canister_id: str) -> None:
        """That canister's work is over: it shows no plan any more (it may have shown one)."""
        with self._changed:
            self._waiting_for.discard(canister_id)
            self._ask_when_ready()

    def _confirm(self, canister_id: str, plan: dict[str, Any]) -> bool:
        with self._changed:
            if self._answer is None:
                self._plans[canister_id] = plan
                self._waiting_for.discard(canister_id)
                self._ask_when_ready()
            while self._answer is None:
                self._changed.wait()
            return self._answer

    def _ask_when_ready(self) -> None:
        if self._answer is not None or self._waiting_for or not self._plans:
            return
        plans = list(self._plans.values())
        totals = {
            "canisters": len(plans),
            "bytes": sum(p["bytes"] for p in plans),
            "messages": sum(p["messages"] for p in plans),
            "estimated_cycles": sum(p["estimated_cycles"] for p in plans),
            "kinds": sorted({p["kind"] for p in plans}),
        }
        try:
            self._answer = bool(self._ask(totals))
        except BaseException:
            self._answer = False
            raise
        finally:
            self._changed.notify_all()
