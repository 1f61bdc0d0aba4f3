"""Will the built files fit the target canister? Checked before any byte is uploaded.

Per file role the kind's profile (canisters/<kind>/profile.toml) gives the largest file one load can
read (llama_cpp: one message reads at most ~2 GiB of stable memory) and, for GGUF, the architectures the
canister's llama.cpp knows. On top, the heap the loaded model needs is compared with the 4 GiB wasm heap.
A refusal names the file, the number that does not fit, the limit and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PrepError
from pipeline.formats.safetensors import DTYPE_SIZES, read_safetensors_header
from pipeline.manifest import Artifact
from pipeline.quantize.layout import read_layout
from pipeline.targets.profile import RoleProfile, TargetProfile, load_profile

WASM_HEAP_BYTES = 4 * 1024**3
_HEAP_HINT = "pick a smaller model or a smaller quantization (e.g. q4_0), or trim/cast the weights to f16"


@dataclass(frozen=True)
class FitCheck:
    role: str
    what: str  # "size", "architecture", "heap"
    ok: bool
    detail: str


@dataclass(frozen=True)
class FitReport:
    kind: str
    checks: tuple[FitCheck, ...]
    heap_bytes: int

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def check_fit(
    kind: str, artifacts: dict[str, Artifact], *, profile: TargetProfile | None = None
) -> FitReport:
    """Checks every artifact against the kind's limits; raises PrepError naming what does not fit."""
    profile = profile or load_profile(kind)
    checks: list[FitCheck] = []
    heap = 0
    for role_name, artifact in sorted(artifacts.items()):
        role = profile.role(role_name)
        checks.append(_size_check(profile.kind, role, artifact))
        if role.format == "gguf" and role.architectures:
            checks.append(_architecture_check(profile.kind, role, artifact))
        heap += heap_estimate(role, artifact.path)
    checks.append(_heap_check(heap))
    report = FitReport(profile.kind, tuple(checks), heap)
    failures = [c for c in report.checks if not c.ok]
    if failures:
        hints = [_hint(profile, c) for c in failures]
        raise PrepError(
            f"the build does not fit canister kind {profile.kind}: " + "; ".join(c.detail for c in failures),
            hint="; ".join(dict.fromkeys(h for h in hints if h)),
        )
    return report


def heap_estimate(role: RoleProfile, path: Path) -> int:
    """Bytes of wasm heap the loaded file needs.

    GGUF weights are read into the heap as stored. The GPT-2 canister keeps the safetensors bytes in a
    heap buffer and reads every tensor as F32 next to it.
    """
    size = path.stat().st_size
    if role.format == "safetensors":
        header = read_safetensors_header(path)
        n_elements = sum(t.nbytes // DTYPE_SIZES[t.dtype] for t in header.tensors)
        return size + 4 * n_elements
    return size


def _size_check(kind: str, role: RoleProfile, artifact: Artifact) -> FitCheck:
    limit = role.max_bytes
    if limit is None or artifact.size <= limit:
        detail = f"{artifact.path.name}: {artifact.size:,} bytes" + (f" (limit {limit:,})" if limit else "")
        return FitCheck(role.name, "size", True, detail)
    return FitCheck(
        role.name,
        "size",
        False,
        f"{role.name} file {artifact.path} is {artifact.size:,} bytes, over the {limit:,}-byte limit of one "
        f"{kind} load ({artifact.size - limit:,} bytes too many)",
    )


def _architecture_check(kind: str, role: RoleProfile, artifact: Artifact) -> FitCheck:
    arch = read_layout(artifact.path).architecture
    if arch in role.architectures:
        return FitCheck(role.name, "architecture", True, f"GGUF architecture {arch}")
    return FitCheck(
        role.name,
        "architecture",
        False,
        f"{artifact.path.name} has GGUF architecture {arch!r}, which {kind} cannot load "
        f"(it knows {', '.join(role.architectures)})",
    )


def _heap_check(heap: int) -> FitCheck:
    if heap <= WASM_HEAP_BYTES:
        return FitCheck("*", "heap", True, f"heap needed ~{heap:,} of {WASM_HEAP_BYTES:,} bytes")
    return FitCheck(
        "*",
        "heap",
        False,
        f"loading needs ~{heap:,} bytes of wasm heap, over the {WASM_HEAP_BYTES:,}-byte (4 GiB) limit",
    )


def _hint(profile: TargetProfile, check: FitCheck) -> str | None:
    if check.what == "heap":
        return _HEAP_HINT
    if check.what == "architecture":
        return f"pick a model whose architecture {profile.kind} supports"
    return profile.role(check.role).limit_hint
