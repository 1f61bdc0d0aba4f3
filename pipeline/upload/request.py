"""What an upload run is asked to do, and what it reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.targets.profile import TargetProfile
from pipeline.upload.budget import BudgetOptions
from pipeline.upload.flow import FlowControl

# Upper bound of the chunks in flight for offset targets; the window adapts below it (upload.congestion).
DEFAULT_WINDOW = 64
# Concurrent read-back queries: queries take no block space, so they need no adaptive window.
READ_WINDOW = 12


@dataclass(frozen=True)
class UploadFile:
    role: str
    path: Path
    remote: str
    sha256: str | None = None  # known from the build manifest; computed when None
    recipe: str | None = None  # the recipe it was built by, kept in the journal (prep status shows it)
    bundle: str | None = None  # the release bundle folder it comes from, likewise


@dataclass(frozen=True)
class UploadRequest:
    profile: TargetProfile
    canister_id: str
    files: tuple[UploadFile, ...]
    workspace_root: Path
    variables: dict[str, Any] = field(default_factory=dict)  # load_args, max_tokens_*, ...
    strict_order: bool = False
    window: int = DEFAULT_WINDOW
    check_interface: bool = True
    run_steps: bool = True
    budget: BudgetOptions = BudgetOptions()
    wait_for_lock: bool = False  # another process uploading the same file: wait for it (else fail at once)
    validate: bool = True  # check each file's format (the role's `format`) before the first byte
    restart: bool = False  # discard the journals: send every file from its first byte
    verify: bool = False  # read back what the journal says is complete instead of trusting it
    # Shared by the canisters of one subnet in a fleet; None: this upload gets its own, of at most `window`.
    flow: FlowControl | None = None


@dataclass
class UploadReport:
    canister_id: str
    kind: str
    files: list[dict[str, Any]] = field(default_factory=list)
    bytes_sent: int = 0
    chunks_sent: int = 0
    chunks_resent: int = 0
    steps: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cycles: dict[str, int | None] | None = None  # estimated, before, after, spent (budget.Budget.summary)
    flow: dict[str, Any] | None = None  # the window reached and what it was sized from (FlowControl.stats)
