"""HubSim: a threaded HTTP server on 127.0.0.1 speaking the Hub API subset of FACTS.md §4.

LFS files are answered with a redirect to a "CDN" on another host name (localhost instead of 127.0.0.1),
as the real Hub does, so the client takes its cross-host path (metadata from the redirect, no auth sent).
Plain files for URL sources are served under /files/.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from tests.hubsim.repos import (
    HubFile,
    HubRepo,
    SparseContent,
    card_data,
    commit_id,
    files_from_dir,
    make_files,
)

DEFAULT_TOKEN = "hf_hubsim_token"

_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Truncation:
    """Serve only the next `after` bytes of a file, `times` times, then close the connection (after
    holding it silent for `pause_s`: a stalled, then dropped download)."""

    after: int
    times: int
    pause_s: float = 0.0


class HubSim:
    def __init__(
        self,
        *,
        port: int = 0,
        lfs_threshold: int = 1024,
        page_size: int = 50,
        tokens: tuple[str, ...] = (DEFAULT_TOKEN,),
    ):
        self.requested_port = port
        self.lfs_threshold = lfs_threshold
        self.page_size = page_size
        self.tokens = set(tokens)
        self.repos: dict[str, HubRepo] = {}
        self.plain_files: dict[str, bytes] = {}
        self.truncations: dict[str, Truncation] = {}
        self.requests: list[tuple[str, str]] = []
        self.range_requests: list[tuple[str, str]] = []
        self.outage_status: int | None = None
        self._commit_count = 0
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- content -------------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes | SparseContent] | Path,
        *,
        revision: str = "main",
        gated: bool = False,
    ) -> str:
        """Creates (or replaces) a repo whose first commit holds `files`; returns the commit id."""
        self.repos[repo_id] = HubRepo(repo_id, gated=gated)
        return self.commit(repo_id, files, revision=revision)

    def commit(
        self, repo_id: str, files: dict[str, bytes | SparseContent] | Path, *, revision: str = "main"
    ) -> str:
        """Adds a commit with exactly `files` and points `revision` at it; returns the commit id."""
        contents: dict[str, bytes | SparseContent] = {
            **(files_from_dir(files) if isinstance(files, Path) else files)
        }
        repo = self.repos[repo_id]
        with self._lock:
            self._commit_count += 1
            hub_files = make_files(contents, self.lfs_threshold)
            sha = commit_id(repo_id, self._commit_count, hub_files)
            repo.commits[sha] = hub_files
            repo.refs[revision] = sha
        return sha

    def corrupt(self, repo_id: str, path: str, enabled: bool = True) -> None:
        """Serves wrong bytes of the right length for `path` while enabled."""
        target = self.repos[repo_id].corrupted
        if enabled:
            target.add(path)
        else:
            target.discard(path)

    def add_plain_file(self, name: str, data: bytes) -> str:
        """A file for URL sources; returns its URL."""
        self.plain_files[name] = data
        return f"{self.url}/files/{quote(name)}"

    def truncate_plain_file(self, name: str, after: int, times: int = 1) -> None:
        self.truncations[name] = Truncation(after, times)

    def interrupt_download(self, path: str, after: int, times: int = 1, pause_s: float = 0.0) -> None:
        """The next `times` downloads of the repo file `path` send `after` bytes, go silent for
        `pause_s`, then drop the connection (clients resume with a Range request)."""
        self.truncations[path] = Truncation(after, times, pause_s)

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> str:
        handler = type("HubSimHandler", (_Handler,), {"sim": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.requested_port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="hubsim", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stops serving and drops open keep-alive connections, so clients see the Hub go away."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections.clear()

    def __enter__(self) -> HubSim:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "HubSim is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://localhost:{self.port}"

    def downloads(self, needle: str = "") -> list[str]:
        """Paths of GET requests that transferred file bytes (resolve, CDN or plain files)."""
        return [
            p
            for m, p in self.requests
            if m == "GET" and ("/resolve/" in p or p.startswith(("/cdn/", "/files/"))) and needle in p
        ]

    def find_lfs(self, sha256: str) -> tuple[HubRepo, HubFile] | None:
        for repo in self.repos.values():
            for files in repo.commits.values():
                for hub_file in files.values():
                    if hub_file.lfs and hub_file.sha256 == sha256:
                        return repo, hub_file
        return None


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit


class _Handler(BaseHTTPRequestHandler):
    sim: HubSim
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.sim._lock:
            self.sim._connections.add(self.connection)

    def finish(self) -> None:
        with self.sim._lock:
            self.sim._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read `sim.requests` instead."""

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # --- routing -------------------------------------------------------------------------------------

    def _dispatch(self, head: bool) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.sim.requests.append((self.command, self.path))
        if "Range" in self.headers:
            self.sim.range_requests.append((self.path, self.headers["Range"]))
        try:
            if self.sim.outage_status is not None:
                raise _HubError(self.sim.outage_status, None, "Service Unavailable")
            if path == "/api/agent-harnesses":
                raise _HubError(404, None, "Not Found")
            if path.startswith("/files/"):
                return self._plain_file(unquote(path[len("/files/") :]), head)
            if path.startswith("/cdn/"):
                return self._cdn(path[len("/cdn/") :], head)
            if path.startswith("/api/models/"):
                return self._api(path[len("/api/models/") :], query, head)
            match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
            if match:
                return self._resolve(match.group(1), unquote(match.group(2)), unquote(match.group(3)), head)
            raise _HubError(404, None, f"no route for {path}")
        except _HubError as err:
            self._send_error(err, head)

    def _repo(self, repo_id: str) -> HubRepo:
        repo = self.sim.repos.get(repo_id)
        if repo is None:
            raise _HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _commit(self, repo: HubRepo, revision: str) -> tuple[str, dict[str, HubFile]]:
        sha = repo.resolve(revision)
        if sha is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha, repo.commits[sha]

    def _api(self, rest: str, query: dict[str, str], head: bool) -> None:
        segments = rest.split("/")
        if len(segments) < 2:
            raise _HubError(404, None, "bad repo id")
        repo = self._repo("/".join(segments[:2]))
        tail = segments[2:]
        if not tail:
            return self._model_info(repo, "main", query, head)
        if tail[0] == "revision" and len(tail) == 2:
            return self._model_info(repo, unquote(tail[1]), query, head)
        if tail[0] == "tree" and len(tail) >= 2:
            return self._tree(repo, unquote(tail[1]), unquote("/".join(tail[2:])), query, head)
        raise _HubError(404, None, f"no API route for {rest}")

    # --- API -----------------------------------------------------------------------------------------

    def _model_info(self, repo: HubRepo, revision: str, query: dict[str, str], head: bool) -> None:
        sha, files = self._commit(repo, revision)
        with_blobs = query.get("blobs", "").lower() == "true"
        siblings = []
        for hub_file in sorted(files.values(), key=lambda f: f.path):
            sibling: dict[str, Any] = {"rfilename": hub_file.path}
            if with_blobs:
                sibling.update(size=hub_file.size, blobId=hub_file.blob_id)
                if hub_file.lfs:
                    sibling["lfs"] = {
                        "sha256": hub_file.sha256,
                        "size": hub_file.size,
                        "pointerSize": len(hub_file.lfs_pointer()),
                    }
            siblings.append(sibling)
        info = {
            "_id": repo.repo_id,
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": sha,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "tags": [],
            "siblings": siblings,
        }
        readme = files.get("README.md")
        if readme is not None and isinstance(readme.data, bytes):
            info["cardData"] = card_data(readme.data)
        self._send_json(info, head)

    def _tree(self, repo: HubRepo, revision: str, prefix: str, query: dict[str, str], head: bool) -> None:
        sha, files = self._commit(repo, revision)
        recursive = query.get("recursive", "").lower() in ("true", "1")
        entries = _tree_entries(files, prefix.strip("/"), recursive)
        if prefix and not entries:
            raise _HubError(404, "EntryNotFound", f"{prefix} does not exist on {sha}", commit=sha)
        start = int(query.get("cursor", "0"))
        page = entries[start : start + self.sim.page_size]
        headers: dict[str, str] = {}
        if start + self.sim.page_size < len(entries):
            split = urlsplit(self.path)
            params = parse_qs(split.query)
            params["cursor"] = [str(start + self.sim.page_size)]
            next_query = "&".join(f"{k}={quote(v[-1])}" for k, v in params.items())
            headers["Link"] = f'<{self.sim.url}{split.path}?{next_query}>; rel="next"'
        self._send_json(page, head, headers)

    # --- file transfer -------------------------------------------------------------------------------

    def _resolve(self, repo_id: str, revision: str, path: str, head: bool) -> None:
        repo = self._repo(repo_id)
        sha, files = self._commit(repo, revision)
        if repo.gated:
            self._check_gate(repo)
        hub_file = files.get(path)
        if hub_file is None:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {sha}", commit=sha)
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if hub_file.lfs:
            headers.update(
                {
                    "X-Linked-Etag": f'"{hub_file.sha256}"',
                    "X-Linked-Size": str(hub_file.size),
                    "ETag": f'"{hub_file.blob_id}"',
                    "Location": f"{self.sim.cdn_url}/cdn/{hub_file.sha256}",
                    "Content-Length": "0",
                }
            )
            self._send(302, headers, b"", head)
            return
        headers["ETag"] = f'"{hub_file.blob_id}"'
        self._send_content(self._served_bytes(repo, hub_file), headers, head)

    def _check_gate(self, repo: HubRepo) -> None:
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None
        if token is None:
            message = f"Access to model {repo.repo_id} is restricted. You must be authenticated to access it."
            raise _HubError(401, "GatedRepo", message)
        if token not in self.sim.tokens:
            message = f"Access to model {repo.repo_id} is restricted and you are not in the authorized list."
            raise _HubError(403, "GatedRepo", message)

    def _cdn(self, sha256: str, head: bool) -> None:
        found = self.sim.find_lfs(sha256)
        if found is None:
            raise _HubError(404, None, "NoSuchKey")
        repo, hub_file = found
        served = self._served_bytes(repo, hub_file)
        if not self._send_truncated(hub_file.path, served, head):
            self._send_content(served, {"ETag": f'"{sha256}"'}, head)

    def _served_bytes(self, repo: HubRepo, hub_file: HubFile) -> bytes | SparseContent:
        if hub_file.path in repo.corrupted and isinstance(hub_file.data, bytes):
            return bytes(b ^ 0x5A for b in hub_file.data)
        return hub_file.data

    def _plain_file(self, name: str, head: bool) -> None:
        data = self.sim.plain_files.get(name)
        if data is None:
            raise _HubError(404, None, f"{name} not found")
        if not self._send_truncated(name, data, head):
            self._send_content(data, {}, head)

    def _send_truncated(self, key: str, data: bytes | SparseContent, head: bool) -> bool:
        """Serves an armed truncation of `key` (from the requested offset) and drops the connection."""
        truncation = self.sim.truncations.get(key)
        if truncation is None or truncation.times <= 0 or head:
            return False
        truncation.times -= 1
        start = self._range_start(len(data))
        status = 206 if start else 200
        headers = {"Content-Length": str(len(data) - start), "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self.send_response(status)
        for header, value in headers.items():
            self.send_header(header, value)
        self.end_headers()
        self.wfile.write(bytes(data[start : start + truncation.after]))
        self.wfile.flush()
        time.sleep(truncation.pause_s)
        self.close_connection = True
        return True

    def _range_start(self, size: int) -> int:
        match = _RANGE_RE.match(self.headers.get("Range", ""))
        return min(int(match.group(1)), size) if match else 0

    def _send_content(self, data: bytes | SparseContent, headers: dict[str, str], head: bool) -> None:
        headers = {**headers, "Accept-Ranges": "bytes"}
        match = _RANGE_RE.match(self.headers.get("Range", ""))
        if match and not head:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data):
                headers["Content-Range"] = f"bytes */{len(data)}"
                self._send(416, headers, b"", head)
                return
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, headers, data[start : end + 1], head)
            return
        self._send(200, headers, data, head)

    # --- responses -----------------------------------------------------------------------------------

    def _send_json(self, data: Any, head: bool, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(data).encode()
        self._send(200, {"Content-Type": "application/json", **(headers or {})}, body, head)

    def _send_error(self, err: _HubError, head: bool) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        if err.commit:
            headers["X-Repo-Commit"] = err.commit
        self._send(err.status, headers, json.dumps({"error": err.message}).encode(), head)

    def _send(self, status: int, headers: dict[str, str], body: bytes | SparseContent, head: bool) -> None:
        self.send_response(status)
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        step = 1 << 20  # a sparse file is written in pieces, never made whole in memory
        for start in range(0, len(body), step):
            self.wfile.write(body[start : start + step])


def _tree_entries(files: dict[str, HubFile], prefix: str, recursive: bool) -> list[dict[str, Any]]:
    base = f"{prefix}/" if prefix else ""
    folders: set[str] = set()
    entries: list[dict[str, Any]] = []
    for path in sorted(files):
        if not path.startswith(base):
            continue
        rest = path[len(base) :].split("/")
        for depth in range(1, len(rest)):
            if recursive or depth == 1:
                folders.add(base + "/".join(rest[:depth]))
        if len(rest) > 1 and not recursive:
            continue
        hub_file = files[path]
        entry: dict[str, Any] = {"type": "file", "oid": hub_file.blob_id, "size": hub_file.size, "path": path}
        if hub_file.lfs:
            entry["lfs"] = {
                "oid": hub_file.sha256,
                "size": hub_file.size,
                "pointerSize": len(hub_file.lfs_pointer()),
            }
        entries.append(entry)
    folder_entries = [
        {"type": "directory", "oid": "0" * 40, "size": 0, "path": folder} for folder in sorted(folders)
    ]
    return folder_entries + entries
