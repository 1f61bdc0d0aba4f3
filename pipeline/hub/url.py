"""Plain HTTP(S) downloads for URL sources: streamed into a `.part` file, resumed with Range, verified."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
from tqdm.auto import tqdm

from pipeline.atomic import publish
from pipeline.errors import PrepError
from pipeline.ic.retry import network_budget_s
from pipeline.sha import sha256_file

_ATTEMPTS = 5


def download_url(url: str, dest: Path, *, sha256: str, size: int | None, progress: bool) -> None:
    """Downloads `url` to `dest` (atomically), resuming a previous `.part`; the sha256 must match."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last_error: Exception | None = None
    budget = network_budget_s()
    timeout = httpx.Timeout(budget, connect=min(budget, 10.0))
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for attempt in range(_ATTEMPTS):
            try:
                _fetch_into(client, url, part, size, progress, dest.name)
                break
            except (httpx.TransportError, _ShortRead) as err:
                last_error = err
                time.sleep(min(0.2 * 2**attempt, 5.0))
        else:
            raise PrepError(
                f"download of {url} failed after {_ATTEMPTS} attempts (each waits up to {budget:g} s "
                f"for data): {last_error}",
                hint=f"check the URL and the network; run the fetch again: it resumes from {part}; "
                "PREP_NETWORK_TIMEOUT sets the wait",
            )
    actual = sha256_file(part)
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise PrepError(
            f"sha256 mismatch for {dest.name} from {url}: expected {sha256} (recipe), got {actual}",
            hint="the file at that URL changed or was corrupted in transit; the partial download was deleted",
        )
    publish(part, dest)


class _ShortRead(Exception):
    """The server closed the connection before sending everything it announced."""


def _fetch_into(
    client: httpx.Client, url: str, part: Path, size: int | None, progress: bool, label: str
) -> None:
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have >= size:
        if have == size:
            return
        part.unlink()
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 416 and have:
            part.unlink()
            raise _ShortRead("stale partial download discarded")
        if response.status_code not in (200, 206):
            raise PrepError(f"download of {url} failed: HTTP {response.status_code}")
        if response.status_code == 200:
            have = 0
        remaining = response.headers.get("Content-Length")
        total = have + int(remaining) if remaining is not None else size
        mode = "ab" if have else "wb"
        with (
            open(part, mode) as handle,
            tqdm(
                total=total,
                initial=have,
                unit="B",
                unit_scale=True,
                desc=label,
                file=sys.stderr,
                disable=None if progress else True,  # None: no bar unless stderr is a terminal
                leave=False,
            ) as bar,
        ):
            # No chunk_size: httpx would buffer up to it, losing what arrived before a dropped connection.
            for chunk in response.iter_bytes():
                handle.write(chunk)
                bar.update(len(chunk))
            written = handle.tell()
    if total is not None and written < total:
        raise _ShortRead(f"got {written} of {total} bytes")
