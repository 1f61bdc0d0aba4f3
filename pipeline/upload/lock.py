"""One prep process per canister file: an exclusive OS file lock next to each file's journal.

The lock is `flock` on `<journal>.lock`, held for the whole upload and its steps. The kernel releases it
when the holder's file descriptor closes, whatever ended the process (exit, Ctrl-C, kill -9, a crash),
so no stale lock ever needs cleaning up. The holder writes its pid into the file so that a second
process can say whom it is waiting for.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType

from pipeline.errors import PrepError

# How long a refused process keeps trying to read the holder's pid (it writes it right after locking).
PID_READ_S = 0.5


def lock_path(journal: Path) -> Path:
    return journal.with_name(journal.name.removesuffix(".json") + ".lock")


class FileLocks:
    """Exclusive locks on several journals' lock files, taken in sorted order (no deadlock between
    two waiting processes), released together. `wait=False` fails at once when another process holds one.
    """

    def __init__(
        self,
        journals: Iterable[Path],
        *,
        wait: bool = False,
        on_wait: Callable[[Path, int | None], None] | None = None,
    ) -> None:
        self.paths = sorted({lock_path(j) for j in journals})
        self.wait = wait
        self.on_wait = on_wait
        self._fds: list[int] = []

    def __enter__(self) -> FileLocks:
        try:
            for path in self.paths:
                self._fds.append(self._take(path))
        except BaseException:
            self.release()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def release(self) -> None:
        while self._fds:
            os.close(self._fds.pop())  # closing the descriptor drops the lock

    def _take(self, path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if not self.wait:
                    raise _held_error(path, holder) from None
                if self.on_wait is not None:
                    self.on_wait(path, holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _holder(fd: int) -> int | None:
    """The pid the holder wrote into the lock file (None if it has not written it yet)."""
    deadline = time.monotonic() + PID_READ_S
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _held_error(path: Path, holder: int | None) -> PrepError:
    who = f"process {holder}" if holder is not None else "another process"
    return PrepError(
        f"{who} is uploading the same canister file right now (lock {path})",
        hint="wait for it to finish, or pass --wait to start once it has; "
        "two uploads of one file at once would send it twice",
    )
