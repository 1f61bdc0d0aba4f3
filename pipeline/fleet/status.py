"""`prep status`: what each canister of a fleet holds and runs, read live (queries and read_state only).

Per canister: its subnet and module hash (certified state), cycles, memory and wasm_memory_limit
(`canister_status`, which only a controller may read), whether the kind's ready probe passes, and per
model file its size and sha256, and the recipe and release bundle it came from (the upload journal).

How a file's sha256 is known matters, and each row says it:
- "journal": the workspace's upload journal recorded the local file's sha256, and the canister reports
  exactly what it reported when that upload ended (size and its file record, or its buffer length).
  llama_cpp's own `uploaded_file_details` sha256 is a running hash in arrival order, which a concurrent
  upload scrambles, so it is evidence of "unchanged since", never the file's sha256.
- "read back": `--read-back` read every byte back (offset kinds: concurrent queries) and hashed it,
  which holds whoever uploaded the file.
- "unknown": neither. Append kinds (gpt2, icpp_llama2) cannot return their bytes at all: their sha256
  is at best the journal's, and the row says the bytes stay unproven.
Canisters are asked concurrently (a bounded pool); each wait is bounded by the client's retry policy,
and a canister that cannot be read becomes a row with its error.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pipeline.canister_verify import probe_ready, read_chunks
from pipeline.errors import PrepError, UsageError
from pipeline.ic.candid import ServiceInterface
from pipeline.ic.canister_info import live_interface
from pipeline.ic.client import IcClient
from pipeline.ic.errors import PermanentIcError
from pipeline.ic.management import CanisterStatus, canister_status
from pipeline.targets.append import AppendFile
from pipeline.targets.interface import fit_kind, fitted
from pipeline.targets.offset import OffsetFile
from pipeline.targets.profile import TargetProfile, known_kinds, load_profile
from pipeline.targets.session import TargetSession
from pipeline.upload.budget import estimate_cost
from pipeline.upload.journal import FileRecord, Journal, journal_path
from pipeline.upload.plan import chunk_size_for
from pipeline.upload.request import DEFAULT_WINDOW

# Each canister mostly waits (canister_status is an update call: a block and its certification), so
# many are asked at once; the read-back's queries are shared out so that at most FLEET_READS_IN_FLIGHT
# chunks (~1.9 MB each) are in flight across the fleet.
MAX_PARALLEL_CANISTERS = 16
FLEET_READS_IN_FLIGHT = 48
JOURNAL, READ_BACK, UNKNOWN = "journal", "read back", "unknown"


@dataclass(frozen=True)
class StatusTarget:
    """One canister to look at: `label` as the user named it, the client that reaches it (its network
    and identity), and the recipe the fleet file names for it (kind and remote file names), if any."""

    label: str
    canister_id: str
    client: IcClient
    profile: TargetProfile | None = None
    remotes: dict[str, str] = field(default_factory=dict)  # role -> remote name (the recipe's)


@dataclass
class FileState:
    role: str
    remote: str
    size: int | None  # what the canister holds (None: no such file, or it cannot tell)
    sha256: str | None
    sha256_from: str  # journal | read back | unknown
    journal_sha256: str | None = None
    journal_size: int | None = None
    recipe: str | None = None
    bundle: str | None = None
    size_shown: bool = True  # False: the kind has no size or length query (icpp_llama2)
    readable: bool = True  # False: the canister refused this identity its file queries
    unproven: list[str] = field(default_factory=list)  # what stays unknown, and why
    problems: list[str] = field(default_factory=list)  # absolute: wrong whatever the fleet holds


@dataclass
class CanisterState:
    label: str
    canister_id: str
    network_url: str
    subnet: str | None = None
    kind: str | None = None
    module_hash: str | None = None  # hex; None: no code installed
    controller: bool = False  # whether this identity controls it (cycles and memory readable)
    cycles: int | None = None
    memory_size: int | None = None
    wasm_memory_limit: int | None = None
    freezing_reserve: int | None = None
    min_cycles: int | None = None  # the threshold applied to it
    ready: bool | None = None  # None: the kind has no ready probe
    ready_detail: str = ""
    files: list[FileState] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None  # it could not be read: everything else stays unknown

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StatusOptions:
    workspace_root: Path
    read_back: bool = False
    min_cycles: int | None = None  # None: per canister, its freezing reserve + a re-upload and load
    window: int = DEFAULT_WINDOW


def collect_status(targets: Sequence[StatusTarget], options: StatusOptions) -> list[CanisterState]:
    """One state per target, in order; canisters are read concurrently."""
    workers = max(1, min(MAX_PARALLEL_CANISTERS, len(targets)))
    each = replace(options, window=min(options.window, max(2, FLEET_READS_IN_FLIGHT // workers)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="status") as pool:
        return list(pool.map(lambda t: canister_state(t, each), targets))


def canister_state(target: StatusTarget, options: StatusOptions) -> CanisterState:
    state = CanisterState(target.label, target.canister_id, target.client.network.url)
    try:
        _read_canister(target, options, state)
    except PrepError as err:
        state.error = str(err).splitlines()[0]
    return state


def _read_canister(target: StatusTarget, options: StatusOptions, state: CanisterState) -> None:
    client, cid = target.client, target.canister_id
    raw_hash = client.module_hash(cid)
    state.module_hash = raw_hash.hex() if raw_hash is not None else None
    try:
        controllers = client.controllers(cid)
    except PermanentIcError:
        controllers = None
    if controllers is None and raw_hash is None:
        raise PrepError(f"canister {cid} does not exist on {client.network.url}")
    state.subnet = client.subnet_of(cid)
    state.controller = client.principal in (controllers or ())
    status = canister_status(client, cid) if state.controller else None
    if status is None:
        state.notes.append(
            "cycles and memory: not a controller (only controllers may read canister_status; "
            "sign with --pem or --identity of a controller)"
        )
    else:
        _take_status(state, status)
        state.min_cycles = options.min_cycles
    if state.module_hash is None:
        return
    records = _journal_records(options.workspace_root, client.network.url, cid)
    live = live_interface(client, cid)
    profile = _profile_for(target, records, live, state)
    if profile is None:
        return
    state.kind = profile.kind
    session = TargetSession(client, cid, profile, {"principal": client.principal})
    for role in profile.roles:
        remote = (
            target.remotes.get(role.name) or _journal_remote(records, profile.kind, role.name) or role.remote
        )
        record = records.get(remote)
        state.files.append(_file_state(session, role.name, remote, record, state, options))
    ready = probe_ready(session, profile)
    if ready is not None:
        state.ready, state.ready_detail = ready == "ok", "" if ready == "ok" else ready
    if status is not None and state.min_cycles is None:
        state.min_cycles = status.freezing_reserve + _reload_cost(profile, state.files)


def _take_status(state: CanisterState, status: CanisterStatus) -> None:
    state.cycles = status.cycles
    state.memory_size = status.memory_size
    state.wasm_memory_limit = status.wasm_memory_limit
    state.freezing_reserve = status.freezing_reserve


def _reload_cost(profile: TargetProfile, files: Sequence[FileState]) -> int:
    """Cycles to send this canister's model files again and load them: what recovering from drift costs."""
    sizes = [f.size or f.journal_size or 0 for f in files]
    chunk = chunk_size_for(profile.max_chunk_size, concurrent=True)
    return estimate_cost(profile, sizes, sum(sizes), chunk).total


# ---- which kind, which files -------------------------------------------------------------------


def _journal_records(root: Path, network_url: str, canister_id: str) -> dict[str, FileRecord]:
    """Every upload journal of this workspace for the canister, by remote name."""
    folder = journal_path(root, network_url, canister_id, "x").parent
    records = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        record = Journal(path).record
        if record is not None and record.canister_id == canister_id:
            records[record.remote] = record
    return records


def _journal_remote(records: dict[str, FileRecord], kind: str, role: str) -> str | None:
    named = [r.remote for r in records.values() if r.kind == kind and r.role == role]
    return named[0] if len(named) == 1 else None


def _profile_for(
    target: StatusTarget,
    records: dict[str, FileRecord],
    live: ServiceInterface | None,
    state: CanisterState,
) -> TargetProfile | None:
    """The kind: the fleet file's recipe says it, else the journals, else the one its Candid fits."""
    profile = target.profile
    if profile is None:
        kinds = {r.kind for r in records.values()}
        if len(kinds) == 1:
            profile = load_profile(kinds.pop())
    if profile is None and live is not None:
        fits = [kind for kind in known_kinds() if _fits_files(load_profile(kind), live)]
        if len(fits) == 1:
            profile = load_profile(fits[0])
    if profile is None:
        state.notes.append(
            "kind unknown: no upload journal here, and its candid:service does not name one kind "
            "(name a recipe for it in the fleet file)"
        )
        return None
    if live is None:
        return profile
    try:
        return fitted(profile, live, f"canister {state.canister_id}")
    except PrepError as err:
        raise PrepError(f"it is not a {profile.kind} canister: {str(err).splitlines()[0]}") from err


def _fits_files(profile: TargetProfile, live: ServiceInterface) -> bool:
    return bool(profile.roles) and fit_kind(profile, live).matches


# ---- one model file ----------------------------------------------------------------------------


def _file_state(
    session: TargetSession,
    role_name: str,
    remote: str,
    record: FileRecord | None,
    state: CanisterState,
    options: StatusOptions,
) -> FileState:
    role = session.profile.role(role_name)
    if session.profile.addressing == "offset":
        driver = OffsetFile(session, role, remote)
        view: Any = {"size": driver.remote_size(), "details": driver.details()}
        size = view["size"]
    else:
        view = size = AppendFile(session, role, remote).remote_length()
    file = FileState(role_name, remote, size, None, UNKNOWN)
    file.size_shown = role.size is not None or role.length is not None
    if file.size_shown and size is None and not state.controller:
        # llama_cpp refuses its file queries to non-controllers, which reads as "no such file"
        file.readable = False
        file.unproven.append("its size and record: not readable with this identity (not a controller)")
    offset = session.profile.addressing == "offset"
    read = None
    if offset and options.read_back and size is not None:
        read = _read_back(OffsetFile(session, role, remote), size, options.window)
    if record is not None:
        file.journal_sha256, file.journal_size = record.local_sha256, record.size
        file.recipe, file.bundle = record.recipe, record.bundle
        if file.readable:
            _judge_journal(file, record, view, state, read_back=read is not None)
        if record.bytes_complete and record.loaded is None and _loads(session.profile):
            file.problems.append(
                "not loaded since it went in (journal): the model the canister runs, if any, is an older "
                "one; run prep upload again without --no-load"
            )
    else:
        file.unproven.append("no upload journal for it in this workspace (recipe and bundle unknown)")
    if read is not None:
        if file.sha256 is not None and read != file.sha256:
            file.problems.append(f"read back sha256 {read}, the journal's {file.sha256}")
        file.sha256, file.sha256_from = read, READ_BACK
    if not offset:
        file.unproven.append(f"the bytes themselves: {session.profile.kind} canisters cannot return them")
    return file


def _loads(profile: TargetProfile) -> bool:
    return any(not step.probe for step in profile.steps)


def _judge_journal(
    file: FileState, record: FileRecord, view: Any, state: CanisterState, *, read_back: bool
) -> None:
    """Whether the journal's sha256 describes what the canister holds now."""
    if not record.bytes_complete or record.inflight:
        file.problems.append(
            f"its upload did not finish (journal {record.size:,} bytes): run prep upload again"
        )
        return
    if record.canister_view is None and view is None and not file.size_shown:
        # The kind reports nothing about its files (icpp_llama2): the journal is all there is.
        file.sha256, file.sha256_from = record.local_sha256, JOURNAL
        file.unproven.append(
            "that it is still there: the canister reports nothing to compare the journal with"
        )
        return
    if record.canister_view is None:
        file.unproven.append("the journal recorded no view of the canister at the end of the upload")
        return
    if record.module_hash != state.module_hash:
        # New code may have rewritten or dropped the file and its record; only the bytes can tell.
        if not read_back:
            file.unproven.append(
                f"its sha256: the canister's code changed since the upload (module hash "
                f"{_abbrev(record.module_hash)} then); --read-back proves the bytes"
            )
        return
    if not record.view_differs(view):
        file.sha256, file.sha256_from = record.local_sha256, JOURNAL
        return
    file.problems.append(
        f"does not match its journal: the canister reports {_short(view)}, "
        f"it reported {_short(record.canister_view)} when the upload ended"
    )


def _read_back(driver: OffsetFile, size: int, window: int) -> str:
    """The sha256 of every byte of the remote file, read back by `window` concurrent queries."""
    digest = hashlib.sha256()
    for _, data in read_chunks(driver, size, window):
        digest.update(data)
    return digest.hexdigest()


def _abbrev(text: str | None) -> str:
    return "none" if text is None else text[:12]


def _short(view: Any) -> str:
    if isinstance(view, dict):
        details = view.get("details")
        sha = details.get("filesha256", "") if isinstance(details, dict) else ""
        size = view.get("size")
        held = "no file" if size is None else f"{size:,} bytes"
        return held + (f", its sha256 {sha[:12]}" if sha else "")
    return "nothing" if view is None else f"{view:,} bytes"


CYCLES_SUFFIXES = {"T": 10**12, "B": 10**9, "M": 10**6}


def parse_cycles(text: str, option: str = "--min-cycles") -> int:
    """A cycles amount as written on a command line: 2000000000000, 2_000_000_000_000, 2T or 1.5T."""
    cleaned = text.strip().replace("_", "")
    if re.fullmatch(r"\d{1,3}(,\d{3})+[TtBbMm]?", cleaned):  # thousands separators; "1,5T" is refused
        cleaned = cleaned.replace(",", "")
    scale = CYCLES_SUFFIXES.get(cleaned[-1:].upper(), 1) if cleaned else 1
    number = cleaned[:-1] if scale != 1 else cleaned
    try:
        value = int(number) * scale if number.isdigit() else round(float(number) * scale)
    except (ValueError, OverflowError):
        value = -1
    if not number or number.startswith("-") or value < 0 or value > 10**30:
        raise UsageError(
            f"{option} {text!r} is not an amount of cycles",
            hint=f"e.g. {option} 2T (2,000,000,000,000 cycles) or {option} 500_000_000_000",
        )
    return value
