"""Fetch a recipe's sources: resolve, download into the caches, verify every sha256, honour the lock."""

from __future__ import annotations

import fnmatch
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pipeline.errors import PrepError
from pipeline.events import EventSink
from pipeline.hub.hf import HubClient, HubSettings, HubUnreachable, RemoteFile
from pipeline.hub.lock import Lock, LockedFile, LockedSource, read_lock, source_key, write_lock
from pipeline.hub.url import download_url
from pipeline.recipes import LOCK_SUFFIX, HubSource, Recipe, Source, UrlSource
from pipeline.sha import git_blob_sha1_file, sha256_file
from pipeline.workspace import Workspace


@dataclass(frozen=True)
class FetchedFile:
    name: str
    path: Path
    size: int
    sha256: str
    repo: str | None
    url: str | None
    commit: str | None
    status: str  # "downloaded" or "cached"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": str(self.path),
            "size": self.size,
            "sha256": self.sha256,
            "repo": self.repo,
            "url": self.url,
            "commit": self.commit,
            "status": self.status,
        }


@dataclass(frozen=True)
class FetchResult:
    files: dict[str, FetchedFile]
    lock_path: Path
    offline: bool = False


class LockMismatch(PrepError):
    """--locked found something other than what the lock records."""


def fetch_recipe(
    recipe: Recipe,
    *,
    locked: bool = False,
    progress: bool = True,
    workspace: Workspace | None = None,
    on_event: EventSink | None = None,
) -> FetchResult:
    """Fetches and verifies the recipe's files; writes or, when `locked`, enforces its lock."""
    run = _FetchRun(
        recipe.name, recipe.lock_path, locked, progress, workspace or Workspace.default(), on_event
    )
    return run.fetch(recipe.sources)


def resolve_lock(
    recipe: Recipe,
    *,
    progress: bool = True,
    workspace: Workspace | None = None,
    on_event: EventSink | None = None,
) -> Lock:
    """What the recipe's sources resolve to now, without touching its lock file.

    Each revision is resolved to a commit and every matching file is hashed: LFS files by the Hub's own
    sha256 (their LFS oid, which `fetch --locked` checks again against the downloaded bytes), other files
    (small: configs, tokenizers) by downloading them into the cache and checking their git blob id; URL
    sources by the recipe's sha256 and, when the recipe gives no size, a verified download.
    """
    run = _FetchRun(
        recipe.name, recipe.lock_path, False, progress, workspace or Workspace.default(), on_event
    )
    return run.resolve(recipe.sources)


def adhoc_name(repo: str) -> str:
    return "hf--" + repo.replace("/", "--").lower()


def fetch_repo(
    repo: str,
    patterns: Iterable[str],
    revision: str = "main",
    *,
    locked: bool = False,
    progress: bool = True,
    workspace: Workspace | None = None,
    on_event: EventSink | None = None,
) -> FetchResult:
    """Fetches files of a Hub repo without a recipe; the lock goes into the workspace."""
    workspace = workspace or Workspace.default()
    name = adhoc_name(repo)
    source = HubSource(repo=repo, revision=revision, files=tuple(patterns), sha256={}, size={})
    lock_path = workspace.recipe_dir(name) / f"{name}{LOCK_SUFFIX}"
    return _FetchRun(name, lock_path, locked, progress, workspace, on_event).fetch((source,))


class _FetchRun:
    def __init__(
        self,
        name: str,
        lock_path: Path,
        locked: bool,
        progress: bool,
        workspace: Workspace,
        on_event: EventSink | None,
    ) -> None:
        self.name = name
        self.lock_path = lock_path
        self.locked = locked
        self.progress = progress
        self.workspace = workspace
        self.on_event = on_event
        self.offline = False
        self.client = HubClient(HubSettings.from_env())

    def fetch(self, sources: tuple[Source, ...]) -> FetchResult:
        lock = read_lock(self.lock_path)
        if self.locked and lock is None:
            raise LockMismatch(
                f"--locked: no lock file {self.lock_path}",
                hint="fetch once without --locked, review the lock and commit it",
            )
        if self.locked and lock is not None and len(lock.sources) != len(sources):
            raise LockMismatch(
                f"--locked: {self.lock_path} lists {len(lock.sources)} sources, the recipe has {len(sources)}"
            )
        files: dict[str, FetchedFile] = {}
        resolved: list[LockedSource] = []
        for source in sources:
            key = source_key(source)
            prior = lock.source(key) if lock else None
            if self.locked and prior is None:
                raise LockMismatch(
                    f"--locked: {self.lock_path} has no entry for source {source.label} "
                    "(the recipe's sources changed since the lock was written)"
                )
            if isinstance(source, HubSource):
                commit, fetched = self._fetch_hub(source, prior)
            else:
                commit, fetched = None, [self._fetch_url(source, prior)]
            for item in fetched:
                if item.name in files:
                    raise PrepError(f"two sources of {self.name} both provide a file named {item.name!r}")
                files[item.name] = item
            resolved.append(
                LockedSource(key, commit, {f.name: LockedFile(f.sha256, f.size) for f in fetched})
            )
        new_lock = Lock(self.name, tuple(resolved))
        if not self.locked and not self.offline:
            if lock is not None and lock != new_lock:
                self._say(f"lock updated: {self.lock_path}")
            write_lock(self.lock_path, new_lock)
        return FetchResult(files=files, lock_path=self.lock_path, offline=self.offline)

    def resolve(self, sources: tuple[Source, ...]) -> Lock:
        resolved = []
        for source in sources:
            if isinstance(source, HubSource):
                commit, files = self._resolve_hub(source)
            elif source.size is not None:
                commit, files = None, {source.filename: LockedFile(source.sha256, source.size)}
            else:
                item = self._fetch_url(source, None)
                commit, files = None, {item.name: LockedFile(item.sha256, item.size)}
            resolved.append(LockedSource(source_key(source), commit, files))
        return Lock(self.name, tuple(resolved))

    def _resolve_hub(self, source: HubSource) -> tuple[str, dict[str, LockedFile]]:
        commit = self.client.resolve_commit(source.repo, source.revision)
        remote = self.client.list_files(source.repo, commit)
        files = {}
        for name in _match_files(source, commit, remote):
            entry = remote[name]
            _check_pins_before_download(source, entry)
            if entry.lfs_sha256 is not None:
                files[name] = LockedFile(entry.lfs_sha256, entry.size)
            else:
                item = self._fetch_hub_file(source, commit, entry)
                files[name] = LockedFile(item.sha256, item.size)
        return commit, files

    # --- Hub sources ---------------------------------------------------------------------------------

    def _fetch_hub(self, source: HubSource, prior: LockedSource | None) -> tuple[str, list[FetchedFile]]:
        try:
            commit = self.client.resolve_commit(source.repo, source.revision)
        except HubUnreachable as err:
            if prior is None or prior.commit is None:
                raise HubUnreachable(
                    err.message,
                    hint="nothing is locked for this source yet, so the cache cannot be trusted alone",
                ) from err
            self.offline = True
            self._say(f"{source.repo}: Hub unreachable, using the cache at locked commit {prior.commit[:12]}")
            return prior.commit, [
                self._from_cache(source, prior.commit, n, f) for n, f in prior.files.items()
            ]
        if self.locked and prior is not None and commit != prior.commit:
            raise LockMismatch(
                f"--locked: {source.repo}@{source.revision} now resolves to commit {commit}, "
                f"the lock has {prior.commit}"
            )
        remote = self.client.list_files(source.repo, commit)
        names = _match_files(source, commit, remote)
        if self.locked and prior is not None and set(names) != set(prior.files):
            added = sorted(set(names) - set(prior.files))
            removed = sorted(set(prior.files) - set(names))
            raise LockMismatch(
                f"--locked: the files of {source.repo}@{commit[:12]} differ from the lock "
                f"(new: {', '.join(added) or 'none'}; missing: {', '.join(removed) or 'none'})"
            )
        fetched = []
        for name in names:
            item = self._fetch_hub_file(source, commit, remote[name])
            if self.locked and prior is not None:
                _check_locked(self.lock_path, item, prior.files[name])
            fetched.append(item)
        return commit, fetched

    def _fetch_hub_file(self, source: HubSource, commit: str, remote: RemoteFile) -> FetchedFile:
        name = remote.path
        _check_pins_before_download(source, remote)
        was_cached = self.client.cached_path(source.repo, name, commit) is not None
        path = self.client.download(source.repo, name, commit, progress=self.progress)
        mismatch, sha = _verify_hub_file(source, remote, path)
        if mismatch is not None and was_cached:
            # A damaged cache entry (disk fault, an unverified download by another tool) is replaced, once.
            self.client.evict(path)
            self._say(f"{name}: cached copy does not match {mismatch[0]}; downloading again")
            was_cached = False
            path = self.client.download(source.repo, name, commit, progress=self.progress)
            mismatch, sha = _verify_hub_file(source, remote, path)
        if mismatch is not None:
            self.client.evict(path)
            label, expected, actual = mismatch
            raise PrepError(
                f"{source.repo}/{name}: downloaded content does not match {label}: "
                f"expected {expected}, got {actual}",
                hint="the corrupted copy was removed from the Hugging Face cache; fetch again",
            )
        status = "cached" if was_cached else "downloaded"
        item = FetchedFile(name, path, path.stat().st_size, sha, source.repo, None, commit, status)
        self._report(item)
        return item

    def _from_cache(self, source: HubSource, commit: str, name: str, locked_file: LockedFile) -> FetchedFile:
        path = self.client.cached_path(source.repo, name, commit)
        if path is None:
            raise HubUnreachable(
                f"the Hub is unreachable and {source.repo}/{name} at locked commit {commit[:12]} "
                f"is not cached in {self.client.settings.cache_dir}",
                hint="fetch once online (or check HF_HOME / HF_HUB_CACHE)",
            )
        sha = sha256_file(path)
        pin = source.sha256.get(name, locked_file.sha256)
        for label, expected in (("the lock", locked_file.sha256), ("the recipe's pin", pin)):
            if sha != expected:
                self.client.evict(path)
                raise PrepError(
                    f"{source.repo}/{name}: cached content does not match {label}: "
                    f"expected {expected}, got {sha}",
                    hint="the bad copy was removed from the cache; fetch again online",
                )
        item = FetchedFile(name, path, path.stat().st_size, sha, source.repo, None, commit, "cached")
        self._report(item)
        return item

    # --- URL sources ---------------------------------------------------------------------------------

    def _fetch_url(self, source: UrlSource, prior: LockedSource | None) -> FetchedFile:
        dest = self.workspace.download_cache() / source.sha256[:16] / source.filename
        status = "cached"
        if not dest.exists() or sha256_file(dest) != source.sha256:
            dest.unlink(missing_ok=True)
            download_url(source.url, dest, sha256=source.sha256, size=source.size, progress=self.progress)
            status = "downloaded"
        size = dest.stat().st_size
        if source.size is not None and size != source.size:
            dest.unlink()
            raise PrepError(f"{source.url}: size {size} differs from the recipe's {source.size}")
        item = FetchedFile(source.filename, dest, size, source.sha256, None, source.url, None, status)
        if self.locked and prior is not None:
            _check_locked(self.lock_path, item, prior.files.get(item.name))
        self._report(item)
        return item

    # --- reporting -----------------------------------------------------------------------------------

    def _report(self, item: FetchedFile) -> None:
        self._say(f"{item.name}: {item.status}, verified sha256 {item.sha256[:16]}…")
        if self.on_event is not None:
            self.on_event({"event": "file", **item.to_json()})

    def _say(self, text: str) -> None:
        if self.progress:
            tqdm.write(text, file=sys.stderr)


def _match_files(source: HubSource, commit: str, remote: dict[str, RemoteFile]) -> list[str]:
    names: set[str] = set()
    for pattern in source.files:
        matched = [p for p in remote if fnmatch.fnmatchcase(p, pattern)]
        if not matched:
            listing = ", ".join(sorted(remote)[:12]) + (" …" if len(remote) > 12 else "")
            raise PrepError(
                f"{pattern!r} matches no file in {source.repo}@{source.revision} (commit {commit[:12]})",
                hint=f"files there: {listing or 'none'}",
            )
        names.update(matched)
    for pinned in list(source.sha256) + list(source.size):
        if pinned not in names:
            raise PrepError(f"{source.repo}@{source.revision} has no file {pinned!r}, which the recipe pins")
    return sorted(names)


def _verify_hub_file(
    source: HubSource, remote: RemoteFile, path: Path
) -> tuple[tuple[str, str, str] | None, str]:
    """Checks a file against the Hub's LFS oid and the recipe's pin, or its git blob id when it has neither.

    Returns (label, expected, actual) of the first mismatch or None, and the file's sha256.
    """
    sha = sha256_file(path)
    expectations = []
    if remote.lfs_sha256 is not None:
        expectations.append(("the Hub's LFS oid", remote.lfs_sha256, sha))
    pin = source.sha256.get(remote.path)
    if pin is not None:
        expectations.append(("the recipe's pin", pin, sha))
    if not expectations:
        expectations.append(("the Hub's git blob id", remote.blob_id, git_blob_sha1_file(path)))
    mismatch = next(((label, e, a) for label, e, a in expectations if e != a), None)
    return mismatch, sha


def _check_pins_before_download(source: HubSource, remote: RemoteFile) -> None:
    """Refuses before spending bandwidth when the Hub already says the file is not the pinned one."""
    name = remote.path
    if name in source.size and source.size[name] != remote.size:
        raise PrepError(
            f"{source.repo}/{name}: the Hub reports {remote.size} bytes, the recipe pins {source.size[name]}",
            hint="the file changed upstream; pin a revision or update the recipe",
        )
    pin = source.sha256.get(name)
    if pin is not None and remote.lfs_sha256 is not None and pin != remote.lfs_sha256:
        raise PrepError(
            f"{source.repo}/{name}: the Hub's sha256 is {remote.lfs_sha256}, the recipe pins {pin}",
            hint="the file changed upstream; pin a revision or update the recipe",
        )


def _check_locked(lock_path: Path, item: FetchedFile, locked_file: LockedFile | None) -> None:
    if locked_file is None:
        raise LockMismatch(f"--locked: {item.name} is not in {lock_path}")
    if item.sha256 != locked_file.sha256:
        raise LockMismatch(
            f"--locked: {item.name} has sha256 {item.sha256}, the lock {lock_path} has {locked_file.sha256}"
        )
