"""Cycles and heap before the first byte, and what the upload really cost after the last.

With a controller's identity prep reads `canister_status`: it refuses an upload whose estimated cost
(ingress and execution of every chunk, then the load) exceeds the balance above the freezing reserve,
and a model whose heap (the kind's rule in profile.toml `[resources]`: files plus `heap_overhead_bytes`)
exceeds `wasm_memory_limit`, which `--wasm-memory-limit` raises through `update_settings` first.
Without control of the canister neither can be read: the check is skipped, and said so.
Fees are those of a 13-node subnet (FACTS.md §2).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PrepError
from pipeline.fit import heap_estimate
from pipeline.ic.client import IcClient
from pipeline.ic.errors import IcError, TransientIcError
from pipeline.ic.management import WASM32_HEAP_BYTES, CanisterStatus, canister_status, update_settings
from pipeline.targets.profile import TargetProfile
from pipeline.upload.journal import FileRecord, Journal, journal_path
from pipeline.upload.plan import CYCLES_PER_MESSAGE, estimated_cycles, plan_chunks
from pipeline.upload.progress import UploadProgress

UPDATE_EXECUTION_FEE = 5_000_000
CYCLES_PER_INSTRUCTION = 1
# Every message does some fixed work (entry, Candid decoding, the reply) and carries a Candid header,
# the file name and the offset around its chunk.
INSTRUCTIONS_PER_MESSAGE = 1_000_000
ARG_BYTES_PER_MESSAGE = 100
# `--wasm-memory-limit auto` sets the heap the model needs plus this margin, rounded up to 64 MiB pages.
AUTO_LIMIT_MARGIN = 0.10
AUTO_LIMIT_ROUNDING = 64 * 1024**2
MAX_WASM_MEMORY_LIMIT = 2**48


@dataclass(frozen=True)
class BudgetOptions:
    ignore_cycles: bool = False
    wasm_memory_limit: int | str | None = None  # bytes, "auto", or None to leave it


@dataclass(frozen=True)
class CostEstimate:
    upload: int  # ingress and execution of the chunks still to send
    load: int  # the steps after the bytes (load_model parses the whole model)
    remaining_bytes: int

    @property
    def total(self) -> int:
        return self.upload + self.load


@dataclass
class Budget:
    """What the summary reports: the estimate and the balance before and after (controllers only)."""

    estimate: CostEstimate
    before: CanisterStatus | None

    def summary(self, after: CanisterStatus | None, *, loaded: bool) -> dict[str, int | None]:
        """`loaded`: the run also ran the load steps (else their share is not part of the estimate)."""
        spent = None
        if self.before is not None and after is not None:
            spent = self.before.cycles - after.cycles
        return {
            "estimated": self.estimate.total if loaded else self.estimate.upload,
            "before": self.before.cycles if self.before else None,
            "after": after.cycles if after else None,
            "spent": spent,
        }


def top_up_command(canister_id: str, cycles: int) -> str:
    amount = max(cycles, 100_000_000_000)
    return f"dfx cycles top-up {canister_id} {amount} --network ic"


def estimate_cost(
    profile: TargetProfile, remaining: Sequence[int], total_bytes: int, chunk_size: int
) -> CostEstimate:
    """Cycles for sending `remaining` bytes per file and then loading `total_bytes` of files."""
    resources = profile.resources
    messages = sum(len(plan_chunks(size, chunk_size)) for size in remaining if size > 0)
    sent = sum(remaining)
    ingress = estimated_cycles(sent + messages * ARG_BYTES_PER_MESSAGE, messages)
    instructions = messages * INSTRUCTIONS_PER_MESSAGE + resources.upload_instructions_per_byte * sent
    upload = ingress + messages * UPDATE_EXECUTION_FEE + CYCLES_PER_INSTRUCTION * instructions
    steps = len(profile.steps) + sum(len(role.after) for role in profile.roles)
    per_step = CYCLES_PER_MESSAGE + UPDATE_EXECUTION_FEE + INSTRUCTIONS_PER_MESSAGE * CYCLES_PER_INSTRUCTION
    load = steps * per_step + CYCLES_PER_INSTRUCTION * resources.load_instructions_per_byte * total_bytes
    return CostEstimate(upload, load, sent)


def heap_needed(profile: TargetProfile, files: Sequence[tuple[str, Path]]) -> int:
    """The kind's heap rule: each file's heap (GGUF: its size) plus the profile's overhead."""
    return sum(heap_estimate(profile.role(role), path) for role, path in files) + (
        profile.resources.heap_overhead_bytes
    )


def check_budget(
    client: IcClient,
    profile: TargetProfile,
    canister_id: str,
    records: Sequence[FileRecord],
    paths: Sequence[Path],
    workspace_root: Path,
    options: BudgetOptions,
    progress: UploadProgress,
) -> Budget:
    """Refuses (PrepError) before any byte when the canister cannot pay or hold the model."""
    remaining = [_remaining_bytes(workspace_root, record) for record in records]
    total = sum(r.size for r in records)
    chunk_size = records[0].chunk_size if records else profile.max_chunk_size
    estimate = estimate_cost(profile, remaining, total, chunk_size)
    controllers = client.controllers(canister_id) or []
    skipped = None
    if client.principal not in controllers:
        skipped = f"{client.principal} is not a controller of {canister_id}: cycles and memory not checked"
        status = None
    else:
        try:
            status = canister_status(client, canister_id)
        except TransientIcError as err:  # the upload's own retries may get through; say what was not checked
            skipped = (
                f"canister_status of {canister_id} could not be read ({err}): cycles and memory not checked"
            )
            status = None
    if status is None:
        if options.wasm_memory_limit is not None:
            raise PrepError(
                f"--wasm-memory-limit needs canister_status and update_settings: {skipped}",
                hint="use a controller's identity (--pem / --identity), or leave the setting to a controller",
            )
        progress.event("budget", checked=False, estimated_cycles=estimate.total, reason=skipped)
        return Budget(estimate, None)
    heap = heap_needed(profile, [(r.role, p) for r, p in zip(records, paths, strict=True)])
    status = _apply_memory_limit(client, canister_id, status, heap, options.wasm_memory_limit, progress)
    _check_heap(canister_id, status, heap)
    reserve = _reserve_after(status, estimate.remaining_bytes + total)
    available = status.cycles - reserve
    progress.event(
        "budget", checked=True, estimated_cycles=estimate.total, balance=status.cycles,
        freezing_reserve=reserve, heap_needed=heap, wasm_memory_limit=status.wasm_memory_limit,
        ignored=options.ignore_cycles and available < estimate.total,
    )  # fmt: skip
    if available < estimate.total and not options.ignore_cycles:
        short = estimate.total - available
        raise PrepError(
            f"canister {canister_id} has {available:,} cycles above its freezing reserve ({status.cycles:,} "
            f"balance - {reserve:,} reserve) but this upload and load need about {estimate.total:,} "
            f"({estimate.remaining_bytes:,} bytes to send)",
            hint=f"top it up by at least {short:,} cycles: {top_up_command(canister_id, short)}; "
            "or pass --ignore-cycles to try anyway",
        )
    return Budget(estimate, status)


def finish(
    client: IcClient, canister_id: str, budget: Budget | None, *, loaded: bool
) -> dict[str, int | None] | None:
    """The cycles summary after the run (balance read again when it was read before)."""
    if budget is None:
        return None
    after = None
    if budget.before is not None:
        with contextlib.suppress(IcError, PrepError):
            after = canister_status(client, canister_id)
    return budget.summary(after, loaded=loaded)


@contextlib.contextmanager
def explain_out_of_cycles(canister_id: str) -> Iterator[None]:
    """An IC0207 mid-upload: stop with the top-up command; the journal lets the same command resume."""
    try:
        yield
    except PrepError as err:
        if "IC0207" not in str(err) and "out of cycles" not in str(err):
            raise
        raise PrepError(
            f"canister {canister_id} ran out of cycles during the upload; what was acknowledged is journaled",
            hint=f"top it up ({top_up_command(canister_id, 0)}), then rerun the same command: it resumes "
            "without sending any acknowledged byte again",
        ) from err


def parse_memory_limit(text: str | None) -> int | str | None:
    """`--wasm-memory-limit` value: a number of bytes (suffixes KiB/MiB/GiB allowed) or `auto`."""
    if text is None or text == "auto":
        return text
    units = {"kib": 1024, "mib": 1024**2, "gib": 1024**3}
    lowered = text.strip().lower().replace("_", "")
    factor = next((f for unit, f in units.items() if lowered.endswith(unit)), 1)
    number = lowered[:-3] if factor > 1 else lowered
    try:
        value = int(float(number) * factor)
    except ValueError:
        value = -1
    if not 0 < value <= MAX_WASM_MEMORY_LIMIT:
        raise PrepError(
            f"--wasm-memory-limit {text!r}: expected a number of bytes (e.g. 4026531840 or 3.75GiB) or auto"
        )
    return value


def _remaining_bytes(workspace_root: Path, wanted: FileRecord) -> int:
    """Bytes of the file not yet acknowledged per its journal (all of them without a matching one)."""
    record = Journal(
        journal_path(workspace_root, wanted.network_url, wanted.canister_id, wanted.remote)
    ).record
    if record is None or not record.same_upload(wanted):
        return wanted.size
    if record.bytes_complete:
        return 0
    if record.acked_bytes:
        return wanted.size - record.acked_bytes
    done = sum(
        c.length for c in plan_chunks(wanted.size, wanted.chunk_size) if c.index in record.done_chunks()
    )
    return wanted.size - done


def _reserve_after(status: CanisterStatus, added_bytes: int) -> int:
    """The freezing reserve once the upload and load added `added_bytes` of memory (idle burn grows)."""
    if status.memory_size <= 0:
        return status.freezing_reserve
    return status.freezing_reserve * (status.memory_size + added_bytes) // status.memory_size


def _apply_memory_limit(
    client: IcClient,
    canister_id: str,
    status: CanisterStatus,
    heap: int,
    wanted: int | str | None,
    progress: UploadProgress,
) -> CanisterStatus:
    if wanted is None:
        return status
    if wanted == "auto":
        if heap <= status.heap_limit:
            return status
        limit = min(-(-int(heap * (1 + AUTO_LIMIT_MARGIN)) // AUTO_LIMIT_ROUNDING) * AUTO_LIMIT_ROUNDING,
                    WASM32_HEAP_BYTES)  # fmt: skip
    else:
        limit = int(wanted)
    if limit == status.wasm_memory_limit:
        return status
    update_settings(client, canister_id, wasm_memory_limit=limit)
    progress.event("settings", canister=canister_id, wasm_memory_limit=limit, was=status.wasm_memory_limit)
    return canister_status(client, canister_id)


def _check_heap(canister_id: str, status: CanisterStatus, heap: int) -> None:
    if heap <= status.heap_limit:
        return
    limit = status.wasm_memory_limit
    fits = heap <= WASM32_HEAP_BYTES
    raise PrepError(
        f"loading needs about {heap:,} bytes of wasm heap but canister {canister_id}'s wasm_memory_limit is "
        f"{limit:,}: load_model would trap",
        hint=(
            "pass --wasm-memory-limit auto (or a number of bytes) to raise it before the upload, or: "
            f"dfx canister update-settings {canister_id} --wasm-memory-limit {heap} --network ic"
            if fits
            else "the model does not fit the 4 GiB wasm32 heap at all: pick a smaller model or quantization"
        ),
    )
