"""Artifacts and stage manifests: what a stage read, with which parameters and tools, and what it wrote.

A stage writes `manifest.json` in its directory (deterministic JSON, written atomically). Before running
again it asks `fresh(...)`: same inputs (name, sha256, size), same parameters, same tool versions, and
every output still on disk with its recorded size and sha256. Outputs are re-hashed only when their
mtime changed since the manifest was written, so an unchanged multi-GB build is confirmed in
milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.sha import sha256_file
from pipeline.workspace import write_json_atomic

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_TOOL_DISTRIBUTIONS = ("gguf", "numpy", "safetensors", "tokenizers")


@dataclass(frozen=True)
class Artifact:
    """One built file: its role for the target (e.g. "model"), where it is, its size and sha256."""

    role: str
    path: Path
    size: int
    sha256: str
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InputRecord:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class OutputRecord:
    role: str
    path: str  # relative to the manifest's directory when inside it, else absolute
    size: int
    sha256: str
    mtime_ns: int
    provenance: dict[str, Any]


@dataclass(frozen=True)
class StageManifest:
    stage: str
    recipe: str
    inputs: tuple[InputRecord, ...]
    params: dict[str, Any]
    tools: dict[str, str]
    outputs: tuple[OutputRecord, ...]

    def artifacts(self, base: Path) -> dict[str, Artifact]:
        return {
            o.role: Artifact(o.role, _resolve(base, o.path), o.size, o.sha256, dict(o.provenance))
            for o in self.outputs
        }


def tool_versions(*extra: str) -> dict[str, str]:
    """Versions of prep and of the libraries whose output ends up in the artifacts."""
    versions = {"prep": __version__}
    for name in (*_TOOL_DISTRIBUTIONS, *extra):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def artifact_from_file(role: str, path: Path, provenance: dict[str, Any] | None = None) -> Artifact:
    return Artifact(role, path, path.stat().st_size, sha256_file(path), dict(provenance or {}))


def manifest_path(stage_dir: Path) -> Path:
    return stage_dir / MANIFEST_NAME


def write_manifest(
    stage_dir: Path,
    *,
    stage: str,
    recipe: str,
    inputs: list[InputRecord],
    params: dict[str, Any],
    tools: dict[str, str],
    artifacts: list[Artifact],
) -> StageManifest:
    outputs = tuple(
        OutputRecord(
            a.role, _relative(stage_dir, a.path), a.size, a.sha256, a.path.stat().st_mtime_ns, a.provenance
        )
        for a in artifacts
    )
    manifest = StageManifest(stage, recipe, tuple(inputs), _plain(params), dict(tools), outputs)
    _save(stage_dir, manifest)
    return manifest


def read_manifest(stage_dir: Path) -> StageManifest | None:
    """The stage's manifest, or None when there is none or it cannot be read (the stage then reruns)."""
    try:
        data = json.loads(manifest_path(stage_dir).read_text())
        if data.get("version") != MANIFEST_VERSION:
            return None
        return StageManifest(
            stage=data["stage"],
            recipe=data["recipe"],
            inputs=tuple(InputRecord(**i) for i in data["inputs"]),
            params=data["params"],
            tools=data["tools"],
            outputs=tuple(OutputRecord(**o) for o in data["outputs"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Freshness:
    """Whether a stage can be skipped, and why (or why not), like dvc's "changed because"."""

    manifest: StageManifest | None  # the recorded manifest when the stage can be skipped
    reason: str

    @property
    def is_fresh(self) -> bool:
        return self.manifest is not None


def fresh(
    stage_dir: Path, *, inputs: list[InputRecord], params: dict[str, Any], tools: dict[str, str]
) -> Freshness:
    """The recorded manifest when the stage can be skipped; the reason either way."""
    manifest = read_manifest(stage_dir)
    if manifest is None:
        return Freshness(None, "not built yet (no readable manifest)")
    changed = _changes(manifest, inputs, params, tools)
    if changed:
        return Freshness(None, changed)
    refreshed = []
    for output in manifest.outputs:
        current = _verified(stage_dir, output)
        if current is None:
            return Freshness(None, f"output {output.path} is missing or changed")
        refreshed.append(current)
    if refreshed != list(manifest.outputs):
        manifest = StageManifest(
            manifest.stage,
            manifest.recipe,
            manifest.inputs,
            manifest.params,
            manifest.tools,
            tuple(refreshed),
        )
        _save(stage_dir, manifest)
    return Freshness(manifest, "inputs, parameters, tool versions and outputs unchanged")


def _changes(
    manifest: StageManifest, inputs: list[InputRecord], params: dict[str, Any], tools: dict[str, str]
) -> str | None:
    """What differs from the recorded run: inputs, parameters or tool versions (named), else None."""
    now_inputs = {i.name: i for i in inputs}
    for what, recorded, now in (
        ("inputs", {i.name: i for i in manifest.inputs}, now_inputs),
        ("parameters", manifest.params, _plain(params)),
        ("tool versions", manifest.tools, tools),
    ):
        names = sorted(k for k in set(recorded) | set(now) if recorded.get(k) != now.get(k))
        if names:
            return f"{what} changed: {', '.join(names)}"
    if list(manifest.inputs) != list(inputs):
        return "inputs changed: their order"
    return None


def _verified(stage_dir: Path, output: OutputRecord) -> OutputRecord | None:
    path = _resolve(stage_dir, output.path)
    try:
        stat = path.stat()
    except OSError:
        return None
    if stat.st_size != output.size:
        return None
    if stat.st_mtime_ns == output.mtime_ns:
        return output
    if sha256_file(path) != output.sha256:
        return None
    return OutputRecord(
        output.role, output.path, output.size, output.sha256, stat.st_mtime_ns, output.provenance
    )


def _save(stage_dir: Path, manifest: StageManifest) -> None:
    data = {"version": MANIFEST_VERSION, **asdict(manifest)}
    write_json_atomic(manifest_path(stage_dir), data)


def _plain(value: Any) -> Any:
    """JSON-shaped copy (tuples become lists) so that a value compares equal to its re-read self."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _relative(base: Path, path: Path) -> str:
    # absolute(), not resolve(): a passthrough artifact is a Hugging Face cache snapshot link, and its
    # name (not the blobs/<sha> it points to) is what the next stage and the user should see.
    try:
        return str(path.absolute().relative_to(base.absolute()))
    except ValueError:
        return str(path.absolute())


def _resolve(base: Path, recorded: str) -> Path:
    path = Path(recorded)
    return path if path.is_absolute() else base / path
