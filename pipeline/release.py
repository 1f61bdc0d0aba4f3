"""Release bundles: dist/<recipe>/ with the artifacts, SHA256SUMS and a provenance manifest.json.

A bundle is a pure function of the recipe, its lock and the tools: no timestamps, no local paths,
sorted keys, so two runs (on two machines with the same tool versions) give the same bytes. It is
written into a temporary folder beside the destination and renamed into place, so a reader sees the
old bundle or the whole new one. `verify_bundle` re-checks one: every file listed, every size and
sha256 right, the manifest consistent with SHA256SUMS, nothing extra.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline import __version__
from pipeline.atomic import atomic_writer, fsync_dir, write_atomic
from pipeline.build import BuildResult, build_params, build_recipe, validate_artifact
from pipeline.errors import PrepError
from pipeline.events import EventSink
from pipeline.hub import FetchedFile, FetchResult, fetch_recipe
from pipeline.manifest import Artifact, read_manifest
from pipeline.recipes import HubSource, Recipe, UrlSource
from pipeline.sha import sha256_file
from pipeline.targets.profile import load_profile
from pipeline.workspace import Workspace, dump_json

RELEASE_FORMAT = "prep-release/1"
MANIFEST_NAME = "manifest.json"
SUMS_NAME = "SHA256SUMS"
_SUMS_LINE = re.compile(r"^([0-9a-f]{64})  (\S(?:.*\S)?)$")
_COPY_BLOCK = 8 * 1024 * 1024


@dataclass(frozen=True)
class BundleFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Bundle:
    path: Path
    files: tuple[BundleFile, ...]
    unchanged: bool  # an identical bundle was already there

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "unchanged": self.unchanged,
            "files": [asdict(f) for f in self.files],
        }


def release_recipe(
    recipe: Recipe,
    dist: Path,
    workspace: Workspace,
    *,
    locked: bool = False,
    progress: bool = True,
    on_event: EventSink | None = None,
) -> Bundle:
    """Fetches (locked when asked), builds (or reuses the build), and writes dist/<recipe>/."""
    fetched = fetch_recipe(recipe, locked=locked, progress=progress, workspace=workspace, on_event=on_event)
    built = build_recipe(recipe, fetched, workspace, on_event=on_event)
    extra = {recipe.path.name: recipe.path}
    if recipe.lock_path.is_file():
        extra[recipe.lock_path.name] = recipe.lock_path
    names = _bundle_names(recipe, sorted(built.artifacts), {MANIFEST_NAME, SUMS_NAME, *extra})
    manifest = release_manifest(recipe, fetched, built, names, locked=locked)
    return write_bundle(dist / recipe.name, manifest, names, built.artifacts, extra)


def release_manifest(
    recipe: Recipe, fetched: FetchResult, built: BuildResult, names: dict[str, str], *, locked: bool
) -> dict[str, Any]:
    """Everything needed to say where the bytes came from and how they were made."""
    stage = read_manifest(built.stage_dir)
    if stage is None:
        raise PrepError(f"the build of {recipe.name} in {built.stage_dir} has no readable manifest.json")
    target = recipe.target
    profile = load_profile(target.kind)
    built_by = ci_run(os.environ)
    return {
        **({"built_by": built_by} if built_by else {}),
        "format": RELEASE_FORMAT,
        "prep": __version__,
        "recipe": {
            "name": recipe.name,
            "description": recipe.description,
            "licence": recipe.licence,
            "file": recipe.path.name,
            "sha256": _sha256_bytes(recipe.path.read_bytes()),
            "lock": _lock_record(recipe),
            "locked": locked,
        },
        "sources": [_source_record(source, fetched) for source in recipe.sources],
        "build": {"params": build_params(recipe), "tools": dict(sorted(stage.tools.items()))},
        "target": {
            "kind": target.kind,
            "kind_description": profile.description,
            "files": dict(sorted(target.files.items())),
            "load_args": list(target.load_args),
            "max_tokens_update": target.max_tokens_update,
            "max_tokens_query": target.max_tokens_query,
            "smoke": asdict(target.smoke),
        },
        "artifacts": [
            {
                "file": names[role],
                "role": role,
                "remote": target.files.get(role, profile.role(role).remote),
                "size": artifact.size,
                "sha256": artifact.sha256,
                "steps": artifact.provenance.get("steps", []),
            }
            for role, artifact in sorted(built.artifacts.items(), key=lambda item: names[item[0]])
        ],
    }


def ci_run(env: Mapping[str, str]) -> dict[str, str] | None:
    """The GitHub Actions run that is building, from its GITHUB_* variables; None outside Actions.

    Only inside Actions does the manifest name its run (so a bundle links to its attestation and logs);
    elsewhere it holds nothing about the machine or the time, and two builds give the same bytes.
    """
    if env.get("GITHUB_ACTIONS") != "true":
        return None
    fields = {
        "repository": "GITHUB_REPOSITORY",
        "commit": "GITHUB_SHA",
        "ref": "GITHUB_REF",
        "workflow_ref": "GITHUB_WORKFLOW_REF",
        "event": "GITHUB_EVENT_NAME",
        "run_id": "GITHUB_RUN_ID",
        "run_attempt": "GITHUB_RUN_ATTEMPT",
    }
    run = {name: env[var] for name, var in fields.items() if env.get(var)}
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    if "repository" in run and "run_id" in run:
        run["run_url"] = f"{server}/{run['repository']}/actions/runs/{run['run_id']}"
    return {"service": "github-actions", **run}


def write_bundle(
    destination: Path,
    manifest: dict[str, Any],
    names: dict[str, str],
    artifacts: dict[str, Artifact],
    extra: dict[str, Path],
) -> Bundle:
    """Writes the bundle into a temporary folder, checks every copy, then renames it into place."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.with_name(f".{destination.name}.tmp-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        files = [_copy_checked(a.path, staging / names[role], a.sha256) for role, a in artifacts.items()]
        files += [_copy_checked(path, staging / name, None) for name, path in extra.items()]
        files.append(_write_file(staging / MANIFEST_NAME, dump_json(manifest)))
        files.sort(key=lambda f: f.name)
        sums = "".join(f"{f.sha256}  {f.name}\n" for f in files).encode()
        _write_file(staging / SUMS_NAME, sums)
        fsync_dir(staging)
        if _same_bundle(destination, sums):
            shutil.rmtree(staging)
            return Bundle(destination, tuple(files), unchanged=True)
        _swap_into_place(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(destination, tuple(files), unchanged=False)


# ---- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    files: tuple[BundleFile, ...]
    recipe: str
    kind: str
    built_by: dict[str, Any] | None = None  # the CI run the manifest names, when it names one

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "recipe": self.recipe,
            "kind": self.kind,
            "files": [asdict(f) for f in self.files],
            "built_by": self.built_by,
        }


def verify_bundle(path: Path) -> VerifyReport:
    """Re-checks a bundle; raises PrepError listing every problem found."""
    if not path.is_dir():
        raise PrepError(
            f"{path} is not a release bundle folder", hint="expected dist/<recipe>/ from prep release"
        )
    problems: list[str] = []
    listed = _read_sums(path / SUMS_NAME)
    present = {p.name for p in path.iterdir()} - {SUMS_NAME}
    for name in sorted(present - set(listed)):
        problems.append(f"{name} is in the bundle but not in {SUMS_NAME}")
    files = []
    intact: set[str] = set()
    for name, expected in sorted(listed.items()):
        file = path / name
        if not file.is_file():
            problems.append(f"{name} is listed in {SUMS_NAME} but missing")
            continue
        actual = BundleFile(name, file.stat().st_size, sha256_file(file))
        if actual.sha256 != expected:
            problems.append(f"{name}: sha256 is {actual.sha256}, {SUMS_NAME} says {expected}")
        else:
            intact.add(name)
        files.append(actual)
    # A damaged manifest is reported by its sha256 above; its contents are only read when intact.
    if MANIFEST_NAME in intact or MANIFEST_NAME not in listed:
        manifest = _read_manifest(path, listed)
        problems += _manifest_problems(path, manifest, {f.name: f for f in files})
    if problems:
        raise PrepError(
            f"{path} fails verification ({len(problems)} problem{'s' if len(problems) > 1 else ''}):\n  "
            + "\n  ".join(problems),
            hint="do not use these files; download or rebuild the bundle (prep release RECIPE --locked)",
        )
    built_by = manifest.get("built_by") if isinstance(manifest.get("built_by"), dict) else None
    return VerifyReport(path, tuple(files), manifest["recipe"]["name"], manifest["target"]["kind"], built_by)


def _read_sums(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise PrepError(f"{path} is missing", hint="every bundle from prep release has a SHA256SUMS")
    listed: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = _SUMS_LINE.match(line)
        if match is None or "/" in match.group(2) or match.group(2) in (".", ".."):
            raise PrepError(f"{path}:{number}: not a `sha256sum` line for a file of the bundle: {line!r}")
        listed[match.group(2)] = match.group(1)
    return listed


def _read_manifest(path: Path, listed: dict[str, str]) -> dict[str, Any]:
    if MANIFEST_NAME not in listed:
        raise PrepError(f"{path / SUMS_NAME} does not list {MANIFEST_NAME}")
    try:
        manifest = json.loads((path / MANIFEST_NAME).read_text())
    except (OSError, ValueError) as err:
        raise PrepError(f"{path / MANIFEST_NAME}: not readable JSON ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != RELEASE_FORMAT:
        raise PrepError(f"{path / MANIFEST_NAME}: not a {RELEASE_FORMAT} manifest")
    return manifest


def _manifest_problems(path: Path, manifest: dict[str, Any], files: dict[str, BundleFile]) -> list[str]:
    problems = []
    try:
        artifacts = manifest["artifacts"]
        recipe = manifest["recipe"]
        expected = [(a["file"], a["size"], a["sha256"]) for a in artifacts]
        expected.append((recipe["file"], None, recipe["sha256"]))
        if recipe.get("lock"):
            expected.append((recipe["lock"]["file"], None, recipe["lock"]["sha256"]))
    except (KeyError, TypeError) as err:
        return [f"{MANIFEST_NAME} lacks {err}"]
    for name, size, sha in expected:
        found = files.get(name)
        if found is None:
            problems.append(f"{MANIFEST_NAME} names {name}, which the bundle does not hold")
            continue
        if size is not None and found.size != size:
            problems.append(f"{name}: {found.size:,} bytes, {MANIFEST_NAME} says {size:,}")
        if found.sha256 != sha:
            problems.append(f"{name}: sha256 {found.sha256}, {MANIFEST_NAME} says {sha}")
    described = {name for name, _, _ in expected} | {MANIFEST_NAME}
    for name in sorted(set(files) - described):
        problems.append(f"{name} is listed in {SUMS_NAME} but not described by {MANIFEST_NAME}")
    for item in artifacts:
        file = path / item["file"]
        if item["file"] in files and files[item["file"]].sha256 == item["sha256"]:
            try:
                validate_artifact(Artifact(item["role"], file, item["size"], item["sha256"]))
            except PrepError as err:
                problems.append(f"{item['file']}: {err.message}")
    return problems


# ---- files --------------------------------------------------------------------------------------


def _bundle_names(recipe: Recipe, roles: list[str], reserved: set[str]) -> dict[str, str]:
    """Each artifact is named as in the canister (the base name of its remote name), which stays the
    same however the bytes were made; if two share a name or one is taken, all get a role prefix."""
    profile = load_profile(recipe.target.kind)
    names = {
        role: PurePosixPath(recipe.target.files.get(role, profile.role(role).remote)).name for role in roles
    }
    if len(set(names.values())) < len(names) or set(names.values()) & reserved:
        names = {role: f"{role}-{name}" for role, name in names.items()}
    return names


def _lock_record(recipe: Recipe) -> dict[str, str] | None:
    if not recipe.lock_path.is_file():
        return None
    return {"file": recipe.lock_path.name, "sha256": _sha256_bytes(recipe.lock_path.read_bytes())}


def _source_record(source: HubSource | UrlSource, fetched: FetchResult) -> dict[str, Any]:
    if isinstance(source, UrlSource):
        files = [f for f in fetched.files.values() if f.url == source.url]
        return {"url": source.url, "files": _file_records(files)}
    files = [f for f in fetched.files.values() if f.repo == source.repo]
    return {
        "repo": source.repo,
        "revision": source.revision,
        "commit": files[0].commit if files else None,  # one source resolves to one commit
        "patterns": list(source.files),
        "files": _file_records(files),
    }


def _file_records(files: list[FetchedFile]) -> list[dict[str, Any]]:
    return [{"name": f.name, "size": f.size, "sha256": f.sha256} for f in sorted(files, key=lambda f: f.name)]


def _sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _copy_checked(source: Path, dest: Path, expected_sha256: str | None) -> BundleFile:
    """Copies and hashes in one pass; refuses a source that no longer has the built sha256."""
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as reader, atomic_writer(dest) as writer:
        while block := reader.read(_COPY_BLOCK):
            digest.update(block)
            writer.write(block)
            size += len(block)
    sha = digest.hexdigest()
    if expected_sha256 is not None and sha != expected_sha256:
        raise PrepError(
            f"{source} changed since it was built: sha256 {sha}, the build recorded {expected_sha256}",
            hint="run prep build again, then prep release",
        )
    return BundleFile(dest.name, size, sha)


def _write_file(path: Path, data: bytes) -> BundleFile:
    write_atomic(path, data)
    return BundleFile(path.name, len(data), _sha256_bytes(data))


def _same_bundle(destination: Path, sums: bytes) -> bool:
    """An existing bundle with the same SHA256SUMS that still verifies needs no rewrite."""
    try:
        if (destination / SUMS_NAME).read_bytes() != sums:
            return False
        verify_bundle(destination)
    except (OSError, PrepError):
        return False
    return True


def _swap_into_place(staging: Path, destination: Path) -> None:
    if not destination.exists():
        os.replace(staging, destination)
    else:
        retired = destination.with_name(f".{destination.name}.old-{secrets.token_hex(4)}")
        os.replace(destination, retired)
        os.replace(staging, destination)
        shutil.rmtree(retired, ignore_errors=True)
    fsync_dir(destination.parent)
