"""The one adapter over huggingface_hub: commit resolution, tree listing, cached download, eviction.

Settings are read from the environment at call time and passed explicitly, because huggingface_hub
freezes HF_ENDPOINT / HF_HOME in module constants at import time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub import HfApi, hf_hub_download, hf_hub_url, try_to_load_from_cache
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
from tqdm.auto import tqdm

from pipeline.errors import PrepError

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


class _QuietTqdm(tqdm):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


class HubClient:
    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self._api = HfApi(endpoint=settings.endpoint, token=settings.token)

    def resolve_commit(self, repo: str, revision: str) -> str:
        """The commit id `revision` (branch, tag or commit) points at now."""
        self._require_online(repo)
        with _hub_errors(self.settings, repo, revision):
            info = self._api.model_info(repo, revision=revision)
        if not info.sha:
            raise PrepError(f"the Hub at {self.settings.endpoint} returned no commit for {repo}@{revision}")
        return info.sha

    def list_files(self, repo: str, commit: str) -> dict[str, RemoteFile]:
        with _hub_errors(self.settings, repo, commit):
            entries = list(self._api.list_repo_tree(repo, revision=commit, recursive=True))
        return {
            e.path: RemoteFile(e.path, e.size, e.blob_id, e.lfs.sha256 if e.lfs else None)
            for e in entries
            if isinstance(e, RepoFile)
        }

    def snapshot(self, repo: str, revision: str) -> RepoSnapshot:
        """Commit, files (sizes, LFS sha256) and model card metadata in one model_info call."""
        self._require_online(repo)
        with _hub_errors(self.settings, repo, revision):
            info = self._api.model_info(repo, revision=revision, files_metadata=True)
        if not info.sha:
            raise PrepError(f"the Hub at {self.settings.endpoint} returned no commit for {repo}@{revision}")
        files = {
            s.rfilename: RemoteFile(
                s.rfilename, s.size or 0, s.blob_id or "", s.lfs.sha256 if s.lfs else None
            )
            for s in info.siblings or []
        }
        card = info.card_data.to_dict() if info.card_data is not None else {}
        return RepoSnapshot(repo, info.sha, files, card)

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
        with _hub_errors(self.settings, repo, commit, path):
            local = hf_hub_download(
                repo,
                path,
                revision=commit,
                cache_dir=self.settings.cache_dir,
                endpoint=self.settings.endpoint,
                token=self.settings.token,
                tqdm_class=None if progress else _QuietTqdm,
            )
        return Path(local)

    @staticmethod
    def evict(snapshot_path: Path) -> None:
        """Removes a cached file (its blob and its snapshot link) so it is never served from cache again."""
        blob = Path(os.path.realpath(snapshot_path))
        snapshot_path.unlink(missing_ok=True)
        if blob != snapshot_path:
            blob.unlink(missing_ok=True)

    def _require_online(self, repo: str) -> None:
        if self.settings.offline:
            raise HubUnreachable(f"HF_HUB_OFFLINE is set: not contacting the Hub for {repo}")


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
