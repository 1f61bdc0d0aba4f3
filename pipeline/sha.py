"""Fast streaming sha256 of files, used by every stage that verifies bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

# Large reads amortise the per-call overhead; hashlib releases the GIL for updates above 2 KiB,
# so hashing runs at the speed of the C implementation whatever else the process does.
_BUFFER_SIZE = 4 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of the file at `path`, read in large blocks into one reused buffer."""
    digest = hashlib.sha256()
    buffer = bytearray(_BUFFER_SIZE)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
    return digest.hexdigest()


def git_blob_sha1_file(path: str | Path) -> str:
    """The git blob id of a file, as the Hub reports it for regular (non-LFS) files."""
    file = Path(path)
    digest = hashlib.sha1(f"blob {file.stat().st_size}\0".encode())
    with open(file, "rb", buffering=0) as handle:
        while chunk := handle.read(_BUFFER_SIZE):
            digest.update(chunk)
    return digest.hexdigest()
