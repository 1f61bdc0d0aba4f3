"""Files that are never half-written: built next to their destination, fsync'd, then renamed over it.

Every durable write in prep goes through here (built models, workspace JSON, journals, release bundles,
downloads), so a crash leaves the old file or the whole new one, never a torn one, and new files get the
permissions the user's umask asks for like any other tool's output.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_path(dest: Path, *, sync: bool = True) -> Iterator[Path]:
    """A temporary path beside `dest` for a writer that wants a file name (a C library, GGUFWriter).

    When the block succeeds the file is renamed over `dest` (fsync'd first, and its folder after, unless
    `sync` is False), so readers see the old file or the whole new one; when it fails (Ctrl-C included)
    the temporary file is removed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp makes 0600 files; built files are not secrets
    finally:
        os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        publish(tmp, dest, sync=sync)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(dest: Path, *, sync: bool = True) -> Iterator[BinaryIO]:
    """An open binary file that becomes `dest` when the block succeeds (see `atomic_path`)."""
    with atomic_path(dest, sync=sync) as tmp, open(tmp, "wb") as handle:
        yield handle


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Writes `data` to `path` so that readers see either the old file or the whole new one."""
    with atomic_writer(path, sync=sync) as handle:
        handle.write(data)


def publish(written: Path, dest: Path, *, sync: bool = True) -> None:
    """Renames a fully written file over `dest`; with `sync`, its bytes and then the rename are on disk
    when this returns (the file is fsync'd before the rename, the folder after it)."""
    if sync:
        with open(written, "rb") as handle:
            os.fsync(handle.fileno())
    os.replace(written, dest)
    if sync:
        fsync_dir(dest.parent)


def fsync_dir(path: Path) -> None:
    """Makes the entries of folder `path` (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _new_file_mode() -> int:
    """0666 less the process umask, as open(2) would give."""
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux reports it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    umask = os.umask(0o022)  # elsewhere it can only be read by setting it, for an instant
    os.umask(umask)
    return umask
