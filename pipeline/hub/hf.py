"""The one adapter over huggingface_hub: commit resolution, tree listing, cached download, eviction.

Settings are read from the environment at call time and passed explicitly, because huggingface_hub
freezes HF_ENDPOINT / HF_HOME in module constants at import time.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2  # huggingface_hub's HTTP client (declared in pyproject.toml: its errors are caught here)
from huggingface_hub import HfApi, hf_hub_download, hf_hub_url, set_client_factory, try_to_load_from_cache
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_stream_backoff
from huggingface_hub.utils._http import default_client_factory
from tqdm.auto import tqdm

from pipeline.errors import PrepError
from pipeline.ic.retry import RetryPolicy, Wait, Waits, network_budget_s

DEFAULT_ENDPOINT = "https://huggingface.co"
# A range read is a few MB: a server that sends nothing for this long is not going to.
RANGE_READ_TIMEOUT_S = 30.0
_TRUE = ("1", "true", "yes", "on")


class HubUnreachable(PrepError):
    """The Hub could not be contacted (network down, HF_HUB_OFFLINE set): cached files may still do."""


@dataclass(frozen=True)
class HubSettings:
    endpoint: str
    cache_dir: Path
    token: str | None
    offline: bool
    budget_s: float = field(default_factory=network_budget_s)

    @classmethod
    def from_env(cls) -> HubSettings:
        env = os.environ
        hf_home = Path(env.get("HF_HOME") or Path(env.get("XDG_CACHE_HOME") or "~/.cache") / "huggingface")
        cache = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE") or str(hf_home / "hub")
        return cls(
            endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            cache_dir=Path(cache).expanduser(),
            token=env.get("HF_TOKEN") or None,
            offline=env.get("HF_HUB_OFFLINE", "").lower() in _TRUE,
        )


@dataclass(frozen=True)
class RemoteFile:
    """A file in the repo tree at one commit: the Hub's own hashes for it."""

    path: str
    size: int
    blob_id: str
    lfs_sha256: str | None


@dataclass(frozen=True)
class RepoSnapshot:
    """A repo at one commit: its files with the Hub's hashes, and the model card metadata the Hub parsed."""

    repo: str
    commit: str
    files: dict[str, RemoteFile]
    card: dict[str, Any]


class HubBudgetSpent(Exception):
    """Raised inside huggingface_hub's request hook: not one of its retried errors, so it ends the call."""


@dataclass
class _Patience:
    """How long one Hub operation may go without a sign of life (an answer's headers, bytes)."""

    budget_s: float
    last_sign_of_life: float
    wait: Wait | None = None

    def note(self) -> None:
        self.last_sign_of_life = time.monotonic()
        if self.wait is not None:
            self.wait.alive()


_PATIENCE: ContextVar[_Patience | None] = ContextVar("prep_hub_patience", default=None)
_FACTORY_LOCK = threading.Lock()
_factory_installed = False


def _bound_timeouts(request: httpx2.Request) -> None:
    """huggingface_hub sends its API requests with `timeout=None` (wait forever): every wait gets the
    budget, and no request starts (a retry, a resume) once the Hub has been silent that long."""
    patience = _PATIENCE.get()
    if patience is None:
        return
    if time.monotonic() - patience.last_sign_of_life > patience.budget_s:
        raise HubBudgetSpent(f"no answer for {patience.budget_s:g} s")
    asked = request.extensions.get("timeout") or {}
    budget = patience.budget_s
    request.extensions["timeout"] = {
        phase: min(asked.get(phase) or budget, budget) for phase in ("connect", "read", "write", "pool")
    }


def _sign_of_life(response: httpx2.Response) -> None:
    _sign_of_life_now()


def _sign_of_life_now() -> None:
    patience = _PATIENCE.get()
    if patience is not None:
        patience.note()


def _bounded_client() -> httpx2.Client:
    client = default_client_factory()
    client.event_hooks["request"] = [*client.event_hooks["request"], _bound_timeouts]
    client.event_hooks["response"] = [*client.event_hooks["response"], _sign_of_life]
    return client


def _install_bounded_client() -> None:
    global _factory_installed
    with _FACTORY_LOCK:
        if not _factory_installed:
            set_client_factory(_bounded_client)
            _factory_installed = True


class _ProgressTqdm(tqdm):  # type: ignore[misc]
    """Download progress is a sign of life: a slow but moving download is not a hung Hub."""

    show = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # None: tqdm draws no bar when its output is not a terminal (logs, CI); update() still runs.
        kwargs["disable"] = True if not self.show or kwargs.get("disable") else None
        super().__init__(*args, **kwargs)

    def update(self, n: float | None = 1) -> bool | None:
        _sign_of_life_now()
        return super().update(n)


class _QuietTqdm(_ProgressTqdm):
    show = False


class HubClient:
    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self._api = HfApi(endpoint=settings.endpoint, token=settings.token)
        self._waits = Waits(RetryPolicy(budget_s=settings.budget_s))
        _install_bounded_client()

    def resolve_commit(self, repo: str, revision: str) -> str:
        """The commit id `revision` (branch, tag or commit) points at now."""
        self._require_online(repo)
        with self._bounded(repo), _hub_errors(self.settings, repo, revision):
            info = self._api.model_info(repo, revision=revision, timeout=self.settings.budget_s)
        return self._checked_commit(info.sha, repo, revision)

    def list_files(self, repo: str, commit: str) -> dict[str, RemoteFile]:
        with self._bounded(repo), _hub_errors(self.settings, repo, commit):
            entries = list(self._api.list_repo_tree(repo, revision=commit, recursive=True))
        files = {}
        for entry in entries:
            if isinstance(entry, RepoFile):
                remote = RemoteFile(
                    entry.path, entry.size, entry.blob_id, entry.lfs.sha256 if entry.lfs else None
                )
                _check_listing(remote, self.settings.endpoint, repo)
                files[remote.path] = remote
        return files

    def snapshot(self, repo: str, revision: str) -> RepoSnapshot:
        """Commit, files (sizes, LFS sha256) and model card metadata in one model_info call."""
        self._require_online(repo)
        with self._bounded(repo), _hub_errors(self.settings, repo, revision):
            info = self._api.model_info(
                repo, revision=revision, files_metadata=True, timeout=self.settings.budget_s
            )
        commit = self._checked_commit(info.sha, repo, revision)
        files = {
            s.rfilename: RemoteFile(
                s.rfilename, s.size or 0, s.blob_id or "", s.lfs.sha256 if s.lfs else None
            )
            for s in info.siblings or []
        }
        card = info.card_data.to_dict() if info.card_data is not None else {}
        for remote in files.values():
            _check_listing(remote, self.settings.endpoint, repo)
        return RepoSnapshot(repo, commit, files, card)

    def read_range(self, repo: str, path: str, commit: str, start: int, length: int) -> bytes:
        """Bytes start..start+length of a file (fewer at its end), by an HTTP range request.

        Never reads more than `length` bytes, even from a server that ignores the Range header.
        """
        self._require_online(repo)
        url = hf_hub_url(repo, path, revision=commit, endpoint=self.settings.endpoint)
        headers = build_hf_headers(token=self.settings.token)
        headers["Range"] = f"bytes={start}-{start + length - 1}"
        received = bytearray()
        with (
            self._bounded(f"{repo}/{path}"),
            _hub_errors(self.settings, repo, commit, path),
            http_stream_backoff(
                "GET", url, headers=headers, follow_redirects=True, timeout=RANGE_READ_TIMEOUT_S
            ) as response,
        ):
            hf_raise_for_status(response)
            served = response.headers.get("Content-Range", "") if response.status_code == 206 else ""
            if start and not served.startswith(f"bytes {start}-"):
                raise PrepError(
                    f"the Hub at {self.settings.endpoint} did not serve bytes from {start} of {repo}/{path} "
                    f"(HTTP {response.status_code}, Content-Range {served or 'missing'!r})",
                    hint="use an endpoint that serves byte ranges (the Hub and its mirrors do)",
                )
            for block in response.iter_bytes():
                received += block[: length - len(received)]
                if len(received) >= length:
                    break
        return bytes(received)

    def cached_path(self, repo: str, path: str, commit: str) -> Path | None:
        found = try_to_load_from_cache(repo, path, cache_dir=self.settings.cache_dir, revision=commit)
        return Path(found) if isinstance(found, str) else None

    def download(self, repo: str, path: str, commit: str, *, progress: bool) -> Path:
        """The file's path in the HF cache, downloading it first when it is not there."""
        if self.settings.offline:
            cached = self.cached_path(repo, path, commit)
            if cached is None:
                raise HubUnreachable(
                    f"{repo}/{path} at {commit[:12]} is not in the cache ({self.settings.cache_dir}) "
                    "and HF_HUB_OFFLINE is set",
                    hint="unset HF_HUB_OFFLINE and fetch once online",
                )
            return cached
        with self._bounded(f"{repo}/{path}"), _hub_errors(self.settings, repo, commit, path):
            local = hf_hub_download(
                repo,
                path,
                revision=commit,
                cache_dir=self.settings.cache_dir,
                endpoint=self.settings.endpoint,
                token=self.settings.token,
                etag_timeout=self.settings.budget_s,
                tqdm_class=_ProgressTqdm if progress else _QuietTqdm,
            )
        return Path(local)

    @staticmethod
    def evict(snapshot_path: Path) -> None:
        """Removes a cached file (its blob and its snapshot link) so it is never served from cache again."""
        blob = Path(os.path.realpath(snapshot_path))
        snapshot_path.unlink(missing_ok=True)
        if blob != snapshot_path:
            blob.unlink(missing_ok=True)

    @contextmanager
    def _bounded(self, what: str) -> Iterator[None]:
        """Every wait of this operation within the budget; said on stderr while it lasts."""
        patience = _Patience(self.settings.budget_s, time.monotonic())
        token = _PATIENCE.set(patience)
        try:
            with self._waits.watch(f"the Hub at {self.settings.endpoint} ({what})") as patience.wait:
                yield
        finally:
            _PATIENCE.reset(token)

    def _checked_commit(self, sha: Any, repo: str, revision: str) -> str:
        if not isinstance(sha, str) or not _COMMIT.fullmatch(sha):
            raise PrepError(
                f"the Hub at {self.settings.endpoint} returned no commit id for {repo}@{revision} "
                f"(got {sha!r:.60})",
                hint="is HF_ENDPOINT a Hugging Face Hub?",
            )
        return sha

    def _require_online(self, repo: str) -> None:
        if self.settings.offline:
            raise HubUnreachable(f"HF_HUB_OFFLINE is set: not contacting the Hub for {repo}")


_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_listing(remote: RemoteFile, endpoint: str, repo: str) -> None:
    """The Hub's tree entries are untrusted JSON: wrong types are refused here, not deep in a fetch."""
    valid = (
        isinstance(remote.path, str)
        and remote.path
        and type(remote.size) is int
        and remote.size >= 0
        and isinstance(remote.blob_id, str)
        and (
            remote.lfs_sha256 is None
            or isinstance(remote.lfs_sha256, str)
            and _SHA256.fullmatch(remote.lfs_sha256)
        )
    )
    if not valid:
        raise PrepError(
            f"the Hub at {endpoint} listed a malformed file entry in {repo}: {remote!r:.200}",
            hint="is HF_ENDPOINT a Hugging Face Hub?",
        )


@contextmanager
def _hub_errors(settings: HubSettings, repo: str, revision: str, path: str | None = None) -> Iterator[None]:
    """Turns huggingface_hub and transport exceptions into PrepErrors that say what to do."""
    where = f"{repo}@{revision}"
    try:
        yield
    except GatedRepoError as exc:
        refused = " (HF_TOKEN is not set)" if settings.token is None else " with the token in HF_TOKEN"
        raise PrepError(
            f"{repo} is a gated repo and the Hub refused access{refused}",
            hint="accept the licence on the model page, then set HF_TOKEN to a token with read access",
        ) from exc
    except RepositoryNotFoundError as exc:
        raise PrepError(
            f"repo {repo} not found on {settings.endpoint}",
            hint="check the repo id; a private repo also needs HF_TOKEN",
        ) from exc
    except RevisionNotFoundError as exc:
        raise PrepError(f"revision {revision!r} not found in {repo}") from exc
    except HubBudgetSpent as exc:
        raise HubUnreachable(
            f"the Hub at {settings.endpoint} did not answer for {settings.budget_s:g} s ({where})",
            hint="check the network or HF_ENDPOINT; PREP_NETWORK_TIMEOUT sets how long to wait; "
            "downloads that stall resume where they stopped while progress continues",
        ) from exc
    except (httpx2.TransportError, OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise HubUnreachable(
            f"cannot reach the Hub at {settings.endpoint} for {where}: {_first_line(exc)}",
            hint="check the network or HF_ENDPOINT; files already cached at a locked commit work offline",
        ) from exc
    except EntryNotFoundError as exc:
        raise PrepError(f"file {path!r} not found in {where}") from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        if status >= 500 or status == 429:
            raise HubUnreachable(
                f"the Hub at {settings.endpoint} is unavailable for {where}: {_first_line(exc)}",
                hint="retry later; files already cached at a locked commit work offline",
            ) from exc
        raise PrepError(f"the Hub answered an error for {where}: {_first_line(exc)}") from exc
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # huggingface_hub builds its records from the Hub's JSON without checking types.
        raise PrepError(
            f"the Hub at {settings.endpoint} answered {where} with JSON prep cannot read: {_first_line(exc)}",
            hint="is HF_ENDPOINT a Hugging Face Hub?",
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
