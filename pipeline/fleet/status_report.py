"""How `prep status` shows a fleet: one table row per canister (`!` marks drift), the drift list,
and what stays unproven; or one JSON document with the same content."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from pipeline.fleet.drift import FleetVerdict
from pipeline.fleet.status import CanisterState, FileState

EXIT_CODES = "0: every canister agrees with the fleet's majority and is well; 1: something drifts (see drift)"
HEADER = ("", "canister", "subnet", "module hash", "cycles", "memory", "ready", "model files")


def status_json(states: Sequence[CanisterState], verdict: FleetVerdict) -> dict[str, Any]:
    return {
        "canisters": [s.to_dict() for s in states],
        "majority": verdict.majority,
        "drift": [d.to_dict() for d in verdict.drift],
        "exit_code": verdict.exit_code,
        "exit_codes": EXIT_CODES,
    }


def status_text(states: Sequence[CanisterState], verdict: FleetVerdict) -> str:
    rows = [HEADER] + [_row(s, verdict.drifting(s.label)) for s in states]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows]
    notes = _notes(states)
    if notes:
        lines += ["", "not proven:"] + [f"  {n}" for n in notes]
    lines.append("")
    if verdict.drift:
        lines.append(f"drift ({len(verdict.drift)}):")
        lines += [f"  {d.canister}: {d.reason}" for d in verdict.drift]
    else:
        agreed = ", ".join(f"{k} {_short(_number(v))}" for k, v in verdict.majority.items())
        lines.append(f"no drift: {len(states)} canister{'s' if len(states) != 1 else ''} well" +
                     (f", agreeing on {agreed}" if agreed else ""))  # fmt: skip
    return "\n".join(lines)


def _row(state: CanisterState, drifting: bool) -> tuple[str, ...]:
    mark = "!" if drifting else ""
    label = state.label if state.label == state.canister_id else f"{state.label} ({state.canister_id})"
    if state.error is not None:
        return (mark, label, "", "", "", "", "", f"error: {state.error}")
    cycles = f"{state.cycles / 1e12:.3f} T" if state.cycles is not None else "n/a"
    memory = "n/a"
    if state.memory_size is not None:
        limit = f"{state.wasm_memory_limit / 1e9:.2f} GB" if state.wasm_memory_limit else "none"
        memory = f"{state.memory_size / 1e6:.1f} MB (limit {limit})"
    ready = {True: "yes", False: "NO", None: "-"}[state.ready]
    files = "; ".join(_file_text(f) for f in state.files) or (state.kind or "kind unknown")
    return (
        mark,
        label,
        _short(state.subnet or "?"),
        _short(state.module_hash or "none"),
        cycles,
        memory,
        ready,
        files,
    )


def _file_text(file: FileState) -> str:
    if file.size is not None:
        size = f"{file.size:,} B"
    else:
        size = "absent" if file.size_shown and file.readable else "size unknown"
    sha = f"sha256 {file.sha256[:12]} ({file.sha256_from})" if file.sha256 else "sha256 unknown"
    origin = f" from {file.recipe}" if file.recipe else ""
    if file.bundle:
        origin += f" (bundle {file.bundle})"
    return f"{file.remote} {size}, {sha}{origin}"


def _notes(states: Sequence[CanisterState]) -> list[str]:
    """Each thing left unproven, once, with how many canisters it concerns."""
    counted: Counter[str] = Counter()
    for state in states:
        if state.error is not None:
            continue
        counted.update(set(state.notes))
        counted.update({f"{f.remote}: {u}" for f in state.files for u in f.unproven})
    total = len([s for s in states if s.error is None])
    return [n if c == total else f"{n} ({c} of {total})" for n, c in counted.items()]


def _number(value: Any) -> Any:
    return f"{value:,}" if isinstance(value, int) else value


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) > 16 else text
