"""Splitting a file into the chunks that travel as one ingress message each."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Cost model of an ingress message on mainnet (FACTS.md §2).
CYCLES_PER_MESSAGE = 1_200_000
CYCLES_PER_BYTE = 2_000


@dataclass(frozen=True)
class Chunk:
    index: int
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def plan_chunks(size: int, chunk_size: int) -> list[Chunk]:
    """Equal chunks of `chunk_size` and a shorter last one; an empty file is one empty chunk."""
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    if size == 0:
        return [Chunk(0, 0, 0)]
    return [Chunk(i, off, min(chunk_size, size - off)) for i, off in enumerate(range(0, size, chunk_size))]


def estimated_cycles(total_bytes: int, messages: int) -> int:
    return messages * CYCLES_PER_MESSAGE + total_bytes * CYCLES_PER_BYTE


class LocalFile:
    """Random-access reads of the file being uploaded (os.pread: safe from many threads at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise OSError(f"{self.path}: short read at {offset} (file changed during the upload?)")
        return data

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
