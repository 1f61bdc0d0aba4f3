"""Drift: which canisters of a fleet differ from the rest, or are unwell on their own.

Compared with the fleet's majority (the one value more canisters share than any other; a tie means
there is no majority, which is itself drift): the kind, the module hash, and per model file its size
and sha256. A canister whose sha256 is unknown while the majority's is known is flagged too: nothing
shows it holds the same bytes. Checked on each canister alone, also in a fleet of one: it could not
be read, it has no code, it is not ready, its cycles are below the threshold, a file is missing or
does not match its upload journal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.fleet.status import UNKNOWN, CanisterState, FileState

NO_MAJORITY = "no majority"


@dataclass(frozen=True)
class Drift:
    canister: str  # the label of the canister, or "fleet" for a tie
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"canister": self.canister, "reason": self.reason}


@dataclass
class FleetVerdict:
    majority: dict[str, Any] = field(
        default_factory=dict
    )  # attribute -> the majority's value (or NO_MAJORITY)
    drift: list[Drift] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every canister agrees and is well, 1 when anything drifts."""
        return 1 if self.drift else 0

    def drifting(self, label: str) -> bool:
        return any(d.canister == label for d in self.drift)


def judge(states: Sequence[CanisterState]) -> FleetVerdict:
    verdict = FleetVerdict()
    for state in states:
        verdict.drift += [Drift(state.label, reason) for reason in alone(state)]
    readable = [s for s in states if s.error is None and s.module_hash is not None]
    if len(readable) < 2:
        return verdict
    _compare(verdict, readable, "kind", lambda s: s.kind, "kind")
    _compare(verdict, readable, "module_hash", lambda s: s.module_hash, "module hash")
    roles = sorted({f.role for s in readable for f in s.files})
    for role in roles:
        holding = [s for s in readable if _file(s, role) is not None]
        _compare(verdict, holding, f"{role}.size", lambda s, r=role: _file(s, r).size, f"{role} size")
        _compare_sha(verdict, holding, role)
    order = {s.label: i for i, s in enumerate(states)}
    verdict.drift.sort(key=lambda d: order.get(d.canister, len(order)))
    return verdict


def alone(state: CanisterState) -> list[str]:
    """What is wrong with one canister whatever the rest of the fleet holds."""
    if state.error is not None:
        return [f"unreachable: {state.error}"]
    if state.module_hash is None:
        return ["no code installed"]
    reasons = []
    if state.ready is False:
        reasons.append(f"not loaded/ready ({state.ready_detail})")
    if state.cycles is not None and state.min_cycles is not None and state.cycles < state.min_cycles:
        reasons.append(f"low cycles: {state.cycles:,} < {state.min_cycles:,}")
    for file in state.files:
        if file.size is None and file.size_shown:
            reasons.append(
                f"holds no {file.remote}"
                if file.readable
                else f"{file.remote} not readable: not a controller"
            )
        reasons += [f"{file.remote} {problem}" for problem in file.problems]
    return reasons


def _file(state: CanisterState, role: str) -> FileState | None:
    return next((f for f in state.files if f.role == role), None)


def majority_of(values: Sequence[Hashable]) -> Any:
    """The value more canisters share than any other; NO_MAJORITY on a tie."""
    ranked = Counter(values).most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return NO_MAJORITY
    return ranked[0][0]


def _compare(
    verdict: FleetVerdict,
    states: Sequence[CanisterState],
    key: str,
    value_of: Callable[[CanisterState], Any],
    what: str,
) -> None:
    values = [value_of(s) for s in states if value_of(s) is not None]
    if not values:
        return
    majority = majority_of(values)
    verdict.majority[key] = majority
    if majority == NO_MAJORITY:
        verdict.drift.append(Drift("fleet", f"{what}: no majority ({_tally(values)})"))
        return
    for state in states:
        value = value_of(state)
        if value is not None and value != majority:
            verdict.drift.append(
                Drift(state.label, f"{what} differs: {_show(value)} (fleet: {_show(majority)})")
            )


def _compare_sha(verdict: FleetVerdict, states: Sequence[CanisterState], role: str) -> None:
    _compare(verdict, states, f"{role}.sha256", lambda s: _file(s, role).sha256, f"{role} sha256")
    majority = verdict.majority.get(f"{role}.sha256")
    if majority is None or majority == NO_MAJORITY:
        return
    for state in states:
        file = _file(state, role)
        if file is not None and file.sha256_from == UNKNOWN and file.size is not None:
            reason = f"{role} sha256 unknown (fleet: {_show(majority)}): --read-back proves what it holds"
            verdict.drift.append(Drift(state.label, reason))


def _tally(values: Sequence[Any]) -> str:
    return ", ".join(f"{_show(v)} on {n}" for v, n in Counter(values).most_common())


def _show(value: Any) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value)
    return text[:16] + "…" if len(text) > 20 else text
