"""The human report of `prep recipes new`: the candidates table, the choice and why, what to do next."""

from __future__ import annotations

from pipeline.pick.recipe import NewRecipe
from pipeline.pick.verdicts import Candidate


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def _row(candidate: Candidate) -> tuple[str, ...]:
    return (
        candidate.name,
        _size(candidate.size),
        candidate.quant or "-",
        candidate.architecture or "-",
        str(candidate.context_length or "-"),
        f"{_size(candidate.header_bytes)}/{candidate.header_requests}",
        candidate.verdict,
    )


def candidates_table(candidates: tuple[Candidate, ...]) -> str:
    header = ("FILE", "SIZE", "QUANT", "ARCH", "CTX", "READ/REQS", "VERDICT")
    rows = [header, *(_row(c) for c in candidates)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    details = [f"  {c.name}: {c.detail}" for c in candidates]
    return "\n".join([*lines, "", "why each verdict:", *details])


def human_report(result: NewRecipe) -> str:
    lines = [
        f"{result.repo}@{result.revision} (commit {result.commit[:12]}) for canister kind {result.kind}",
        f"headers read: {result.header_bytes:,} bytes in total by range requests (no model downloaded)",
        "",
        candidates_table(result.candidates),
        "",
        f"choice: {result.why}",
        f"licence: {result.licence}",
        *(f"note: {note}" for note in result.notes),
        f"wrote {result.path}",
        f"next: prep run {result.name} --network local --canister <canister>",
    ]
    return "\n".join(lines)
