"""What a fleet command reports: one row per canister and the fleet's totals, as JSON or a table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.smoke import SmokeAnswer
from pipeline.upload.request import UploadReport


@dataclass
class CanisterRow:
    """One canister's outcome. `ok` only when its work ended without an error (verified, loaded and,
    where asked, answering); else `reason` says why in one line."""

    canister: str  # as the user named it
    canister_id: str
    subnet: str
    ok: bool = False
    reason: str = ""
    bad_input: bool = False  # it failed on what the user gave (a UsageError), not on the canister
    bytes_sent: int = 0
    upload_seconds: float = 0.0
    files: list[dict[str, Any]] = field(default_factory=list)  # role, remote, size, sha256 (verified)
    steps: list[str] = field(default_factory=list)
    answer: str | None = None  # the smoke answer
    cycles_spent: int | None = None
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_sent / self.upload_seconds / 1e6 if self.bytes_sent and self.upload_seconds else 0.0

    def add_upload(self, report: UploadReport) -> None:
        """An upload (or load) run's report: several per canister add up (prep run uploads, then loads)."""
        self.bytes_sent += report.bytes_sent
        self.upload_seconds += report.seconds
        if report.files:
            self.files = list(report.files)
        self.steps += [s for s in report.steps if s not in self.steps]
        spent = (report.cycles or {}).get("spent")
        if spent is not None:
            self.cycles_spent = (self.cycles_spent or 0) + spent

    def add_answer(self, answer: SmokeAnswer) -> None:
        self.answer = answer.text.strip()

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"mb_per_s": round(self.mb_per_s, 3)}


@dataclass
class FleetReport:
    rows: list[CanisterRow]
    seconds: float = 0.0

    @property
    def failed(self) -> list[CanisterRow]:
        return [r for r in self.rows if not r.ok]

    @property
    def bytes_sent(self) -> int:
        return sum(r.bytes_sent for r in self.rows)

    @property
    def mb_per_s(self) -> float:
        """Aggregate: every canister's bytes over the fleet's wall time."""
        return self.bytes_sent / self.seconds / 1e6 if self.seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "canisters": [r.to_json() for r in self.rows],
            "ok": not self.failed,
            "failed": [r.canister for r in self.failed],
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.mb_per_s, 3),
        }

    def table(self) -> str:
        """One line per canister, then the total."""
        width = max(len(r.canister) for r in self.rows)
        lines = []
        for row in self.rows:
            state = "ok" if row.ok else "FAILED"
            sha = ", ".join(f"{f['remote']} {f['sha256'][:12]}" for f in row.files) or "-"
            cycles = "-" if row.cycles_spent is None else f"{row.cycles_spent / 1e12:.4f} T"
            line = (
                f"{row.canister:<{width}}  {state:<6}  subnet {row.subnet[:11]:<11}  {row.bytes_sent:>13,} B"
                f"  {row.mb_per_s:6.2f} MB/s  sha256 {sha}  cycles {cycles}"
            )
            if row.steps:
                line += f"  steps {','.join(row.steps)}"
            if row.answer is not None:
                line += f"  answer {_short(row.answer)}"
            if not row.ok:
                line += f"\n{'':<{width}}  reason: {row.reason}"
            lines.append(line)
        done = len(self.rows) - len(self.failed)
        lines.append(
            f"fleet: {done} of {len(self.rows)} canisters ok; {self.bytes_sent:,} bytes sent in "
            f"{self.seconds:.1f} s ({self.mb_per_s:.2f} MB/s together)"
        )
        return "\n".join(lines)


def _short(text: str, limit: int = 40) -> str:
    text = text.replace("\n", " ")
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
