"""`prep verify dist/RECIPE --canister C`: prove that a deployed canister holds exactly a bundle's bytes.

What can be proven depends on what the canister kind lets a client read:
- offset kinds (llama_cpp) answer ranges of their files: every byte is read back and its sha256 compared
  with the bundle's, so the proof is complete and independent of who uploaded it;
- append kinds (gpt2, icpp_llama2) expose at most a buffer length, and their load steps may use the
  buffer up. There the upload journal of this workspace is the evidence: it records the sha256 and size
  of the file that was sent, every chunk acknowledged once, and the module hash of the code that took
  it; the length query (where there is one) is checked against it. The bytes themselves stay unproven,
  and the report says so.
The canister's module hash is read from the certified state and compared with the one the journal
recorded when the files went in and were loaded; a `ready`-style probe, where the kind has one, shows
whether a model is loaded now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.deploy import DeployBundle
from pipeline.errors import PrepError
from pipeline.formats.llama2c import HEADER, HEADER_FIELDS
from pipeline.formats.names import LLAMA2C_MODEL
from pipeline.ic.client import IcClient
from pipeline.ic.errors import CallRejected
from pipeline.targets.append import AppendFile
from pipeline.targets.calls import CanisterRefused, pick
from pipeline.targets.offset import OffsetFile
from pipeline.targets.profile import CallSpec, RoleProfile, TargetProfile, load_profile
from pipeline.targets.session import TargetSession
from pipeline.upload import preflight
from pipeline.upload.journal import FileRecord, Journal, journal_path
from pipeline.upload.plan import LocalFile, chunk_size_for, plan_chunks
from pipeline.upload.request import READ_WINDOW

PROVEN, CONSISTENT, UNPROVEN, DIFFERS = "proven", "consistent", "unproven", "differs"
# What a llama2.c canister (icpp_llama2) says about the model it loaded: the fields of model.bin's header.
MODEL_CONFIG = CallSpec(method="get_model_config")


@dataclass
class FileProof:
    """What was and was not established about one artifact of the bundle in the canister."""

    file: str  # name in the bundle
    role: str
    remote: str
    size: int
    sha256: str
    verdict: str = UNPROVEN  # proven (every byte), consistent (all evidence agrees), unproven, differs
    proven: list[str] = field(default_factory=list)
    not_proven: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass
class CanisterProof:
    bundle: str
    recipe: str
    kind: str
    network_url: str
    canister_id: str
    module_hash: str | None
    loaded_under: str | None  # module hash the journal recorded for the files, when one did
    ready: str | None  # the kind's readiness probe: "ok", the refusal, or None without a probe
    files: list[FileProof]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def describe(self) -> str:
        lines = [
            f"{self.bundle} in {self.kind} canister {self.canister_id} at {self.network_url}",
            f"  module hash {self.module_hash or 'none (no code installed)'}"
            + (
                ""
                if self.loaded_under is None
                else "; loaded under the same code (journal)"
                if self.loaded_under == self.module_hash
                else f"; the journal recorded {self.loaded_under}"
            ),
        ]
        if self.ready is not None:
            lines.append(f"  ready: {self.ready}")
        for proof in self.files:
            lines.append(f"  {proof.file} -> {proof.remote}: {proof.verdict.upper()}")
            lines += [f"    proven: {p}" for p in proof.proven]
            lines += [f"    not proven: {p}" for p in proof.not_proven]
            lines += [f"    DIFFERS: {p}" for p in proof.problems]
        lines.append("OK" if self.ok else f"FAILED: {len(self.problems)} problem(s)")
        return "\n".join(lines)


def verify_canister(
    bundle: DeployBundle,
    client: IcClient,
    canister_id: str,
    workspace_root: Path,
    *,
    window: int = READ_WINDOW,
    check_interface: bool = True,
) -> CanisterProof:
    """Compares the canister with the (already verified) bundle; never sends an update call.

    With `check_interface`, a canister whose candid:service is not the bundle's kind is refused first
    (its answers to the kind's queries would mean nothing).
    """
    profile = load_profile(bundle.target.kind)
    if check_interface:  # the profile fitted to this canister's interface (older releases lack methods)
        profile = preflight.check_interface(client, canister_id, profile)
    session = TargetSession(client, canister_id, profile, {"principal": client.principal})
    raw_hash = client.module_hash(canister_id)
    module_hash = raw_hash.hex() if raw_hash else None
    files: list[FileProof] = []
    records: list[FileRecord] = []
    for role in profile.roles:
        artifact = bundle.artifacts[role.name]
        remote = bundle.target.files.get(role.name, role.remote)
        proof = FileProof(artifact.path.name, role.name, remote, artifact.size, artifact.sha256)
        record = Journal(journal_path(workspace_root, client.network.url, canister_id, remote)).record
        if record is not None and record.canister_id == canister_id:
            records.append(record)
        else:
            record = None
        if profile.addressing == "offset" and role.read is not None and role.size is not None:
            _read_back(OffsetFile(session, role, remote), artifact.path, proof, window)
        else:
            _append_evidence(AppendFile(session, role, remote), record, proof, artifact.path)
        files.append(proof)
    problems = [f"{p.file}: {problem}" for p in files for problem in p.problems]
    problems += [
        f"{p.file}: nothing shows it is in the canister ({'; '.join(p.not_proven)})"
        for p in files
        if p.verdict == UNPROVEN
    ]
    if module_hash is None:
        problems.append(f"canister {canister_id} has no code installed")
    loaded_under = _loaded_under(records, len(profile.roles))
    if loaded_under is not None and module_hash is not None and loaded_under != module_hash:
        problems.append(
            f"the canister's code changed since the files went in (module hash {loaded_under} then, "
            f"{module_hash} now): what lived in its heap, the loaded model included, is gone; "
            "run prep upload --bundle again"
        )
    ready = probe_ready(session, profile)
    if ready is not None and ready != "ok":
        problems.append(f"the canister is not ready: {ready}")
    return CanisterProof(
        bundle=str(bundle.path),
        recipe=bundle.recipe,
        kind=profile.kind,
        network_url=client.network.url,
        canister_id=canister_id,
        module_hash=module_hash,
        loaded_under=loaded_under,
        ready=ready,
        files=files,
        problems=problems,
    )


# ---- offset kinds: every byte read back -----------------------------------------------------------


def _read_back(driver: OffsetFile, local_path: Path, proof: FileProof, window: int) -> None:
    held = driver.remote_size()
    if held is None:
        proof.verdict = DIFFERS
        proof.problems.append(f"the canister has no file {proof.remote}")
        return
    if held != proof.size:
        proof.verdict = DIFFERS
        proof.problems.append(
            f"the canister's {proof.remote} holds {held:,} bytes, the bundle's {proof.size:,}"
        )
        return
    digest = hashlib.sha256()
    first_difference: int | None = None
    with LocalFile(local_path) as local:
        for chunk, data in read_chunks(driver, held, window):
            digest.update(data)
            if first_difference is None and not local.holds(chunk.offset, data):
                first_difference = chunk.offset
    sha = digest.hexdigest()
    if sha == proof.sha256:
        proof.verdict = PROVEN
        proof.proven.append(
            f"every byte: {held:,} bytes read back from {proof.remote}, sha256 {sha} as in the bundle"
        )
        return
    proof.verdict = DIFFERS
    where = (
        "" if first_difference is None else f"; the first differing range starts at byte {first_difference:,}"
    )
    proof.problems.append(
        f"the canister's {proof.remote} has sha256 {sha}, the bundle's file {proof.sha256}{where}"
    )


def read_chunks(driver: OffsetFile, size: int, window: int) -> Iterator[tuple[Any, bytes]]:
    """The file's ranges in order, read by `window` concurrent queries."""
    chunks = plan_chunks(size, chunk_size_for(driver.session.profile.max_chunk_size, concurrent=True))
    remote = driver.read_ranges([(c.offset, c.length) for c in chunks], window)
    for chunk, data in zip(chunks, remote, strict=True):
        if len(data) != chunk.length:
            raise PrepError(
                f"canister {driver.session.canister_id} returned {len(data):,} bytes of {driver.remote} at "
                f"{chunk.offset:,}, {chunk.length:,} were asked for"
            )
        yield chunk, data


# ---- append kinds: the length query and the journal -----------------------------------------------


def _append_evidence(
    driver: AppendFile, record: FileRecord | None, proof: FileProof, local_path: Path
) -> None:
    role = driver.role
    proof.not_proven.append(
        f"the bytes themselves: a {driver.session.profile.kind} canister cannot return them"
    )
    if record is None:
        proof.not_proven.append(
            "that this file was sent: this workspace has no upload journal for it "
            "(verify where it was deployed, or deploy it again)"
        )
    elif record.local_sha256 != proof.sha256 or record.size != proof.size:
        proof.problems.append(
            f"the journal says the canister was sent another file ({record.size:,} bytes, sha256 "
            f"{record.local_sha256})"
        )
    elif not record.bytes_complete or record.inflight or record.steps_done < len(role.after):
        proof.problems.append("the journal shows an unfinished upload: run prep upload --bundle again")
    else:
        proof.proven.append(
            f"this file ({proof.size:,} bytes, sha256 {proof.sha256}) was sent, each chunk acknowledged "
            f"once and the length checked, under module hash {record.module_hash} (journal)"
        )
    if role.length is not None:
        _length_evidence(driver, role, record, proof)
    service = driver.session.profile.service
    if role.format == LLAMA2C_MODEL and service is not None and MODEL_CONFIG.method in service.methods:
        _model_config_evidence(driver.session, proof, local_path)
    if proof.problems:
        proof.verdict = DIFFERS
    elif proof.proven:
        proof.verdict = CONSISTENT


def _length_evidence(
    driver: AppendFile, role: RoleProfile, record: FileRecord | None, proof: FileProof
) -> None:
    held = driver.remote_length()
    if held == proof.size:
        proof.proven.append(f"the canister's {role.name} buffer holds {held:,} bytes, the bundle's size")
    elif held == 0 and record is not None and role.after and record.steps_done >= len(role.after):
        proof.not_proven.append(f"the length: the {role.name} buffer is empty, used up by the load steps")
    else:
        proof.problems.append(
            f"the canister's {role.name} buffer holds {held or 0:,} bytes, the bundle's {proof.size:,}"
        )


def _model_config_evidence(session: TargetSession, proof: FileProof, local_path: Path) -> None:
    """A llama2.c canister reports the header of the model it loaded: compare it with the bundle's."""
    with local_path.open("rb") as handle:
        header = dict(zip(HEADER_FIELDS, HEADER.unpack(handle.read(HEADER.size)), strict=True))
    try:
        answer = session.query(MODEL_CONFIG)
        loaded = {name: int(pick(answer, name)) for name in HEADER_FIELDS}
    except (PrepError, TypeError, ValueError) as err:
        proof.not_proven.append(f"the loaded model's config: {MODEL_CONFIG.method} gave no answer ({err})")
        return
    if not any(loaded.values()):
        proof.not_proven.append(f"the loaded model's config: {MODEL_CONFIG.method} reports no model set up")
        return
    # llama2.c stores a negative vocab_size for an unshared classifier; loaders report its magnitude.
    differs = [
        f"{name} {loaded[name]} (the bundle's header: {header[name]})"
        for name in HEADER_FIELDS
        if abs(loaded[name]) != abs(header[name])
    ]
    if differs:
        proof.problems.append(f"the canister's loaded model has {', '.join(differs)}")
    else:
        shown = ", ".join(f"{name}={abs(header[name])}" for name in HEADER_FIELDS)
        proof.proven.append(
            f"the loaded model's config ({MODEL_CONFIG.method}: {shown}) is this file's header"
        )


# ---- code and readiness ---------------------------------------------------------------------------


def _loaded_under(records: list[FileRecord], roles: int) -> str | None:
    """The module hash every file was taken (and loaded) under, per journal; None without a full set."""
    hashes = {r.module_hash for r in records}
    return hashes.pop() if len(records) == roles and len(hashes) == 1 else None


def probe_ready(session: TargetSession, profile: TargetProfile) -> str | None:
    probes = [s for s in profile.steps if s.probe and session.is_query(s)]
    for spec in probes:
        try:
            session.query(spec)
        except (CanisterRefused, CallRejected) as err:
            return f"{spec.method}: {err}"
    return "ok" if probes else None
