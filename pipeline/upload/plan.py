"""Splitting a file into the chunks that travel as one ingress message each."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

# Cost model of an ingress message on mainnet (FACTS.md §2).
CYCLES_PER_MESSAGE = 1_200_000
CYCLES_PER_BYTE = 2_000
# A block takes at most 4 MiB of ingress (FACTS.md §2). Concurrent chunks that tile a block fill it;
# two 1.9 MB chunks leave 10% of every block empty. Other users' messages take part of most blocks, so
# chunks tile half a block: four ~1 MB chunks fill an empty block and two the half a busy one leaves
# (three 1.4 MB chunks fill an empty block too, but only one fits in half of one: a third left empty).
BLOCK_INGRESS_BYTES = 4 * 1024 * 1024
TILE_BYTES = BLOCK_INGRESS_BYTES // 2
# What a signed envelope adds to its chunk: sender key, signature, nonce, expiry, method, Candid header
# and the other record fields (about 350 B with Ed25519; generous for secp256k1 and long file names).
ENVELOPE_OVERHEAD_BYTES = 1024


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


def chunk_size_for(max_chunk_size: int, *, concurrent: bool) -> int:
    """The chunk size to send with: the profile's maximum for one-at-a-time uploads (fewest round trips);
    for concurrent ones, the largest size at which a whole number of messages fills half a block."""
    if not concurrent:
        return max_chunk_size
    per_tile = -(-TILE_BYTES // (max_chunk_size + ENVELOPE_OVERHEAD_BYTES))
    return min(max_chunk_size, TILE_BYTES // per_tile - ENVELOPE_OVERHEAD_BYTES)


def estimated_cycles(total_bytes: int, messages: int) -> int:
    return messages * CYCLES_PER_MESSAGE + total_bytes * CYCLES_PER_BYTE


class LocalFile:
    """Random-access reads of the file being uploaded (os.pread: safe from many threads at once)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self._buffers = threading.local()

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise OSError(f"{self.path}: short read at {offset} (file changed during the upload?)")
        return data

    def holds(self, offset: int, data: bytes) -> bool:
        """Whether the file has exactly `data` at `offset`.

        Reads into a buffer each thread reuses: a fresh 1.4 MB `bytes` per compared chunk costs more in
        page faults than the read and the compare (bytes == bytearray is a memcmp).
        """
        buffers: dict[int, bytearray] = self._buffers.__dict__.setdefault("by_length", {})
        buffer = buffers.get(len(data))
        if buffer is None:
            buffer = buffers[len(data)] = bytearray(len(data))
        return os.preadv(self._fd, [buffer], offset) == len(data) and data == buffer

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> LocalFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
