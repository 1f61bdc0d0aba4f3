"""Files that are never half-written: built next to their destination, fsync'd, then renamed over it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """A temporary path beside `dest` for a writer that wants a file name (a C library, GGUFWriter).

    When the block succeeds the file is fsync'd and renamed over `dest`, so readers see the old file or
    the whole new one; when it fails (Ctrl-C included) the temporary file is removed.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(dest: Path) -> Iterator[BinaryIO]:
    """An open binary file that becomes `dest` when the block succeeds (see `atomic_path`)."""
    with atomic_path(dest) as tmp, open(tmp, "wb") as handle:
        yield handle


def write_atomic(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see either the old file or the whole new one."""
    with atomic_writer(path) as handle:
        handle.write(data)
