"""Allocator settings for moving many megabyte-sized buffers through a pool of threads.

Each chunk passes through several fresh 1-2 MB `bytes` (file read, Candid, envelope, HTTP body, CBOR and
Candid decoding of a read-back). glibc serves those from mmap or trims them back to the kernel as soon as
they are freed, so every chunk pays ~700 page faults: a third of the read-back's CPU. A fixed mmap
threshold above the chunk size and a trim threshold of a few such buffers per arena keep that memory
for reuse. Elsewhere (musl, macOS) this does nothing. It changes the whole process, so the library never
calls it: the commands that upload (and the benchmarks) do.
"""

from __future__ import annotations

import ctypes
import threading

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024  # above any chunk or envelope (2 MiB message limit)
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024  # free memory an arena keeps before returning it
# A fleet runs a pool of threads per canister; glibc gives threads up to 8 arenas per core, each keeping
# TRIM_THRESHOLD_BYTES; the more canisters, the more arenas and the more memory kept. Two arenas keep
# it to what two hold (bench/fleet.py --rss-only measures the fleet's peak RSS).
FLEET_ARENAS = 2

_done = False
_lock = threading.Lock()


def keep_chunk_buffers() -> None:
    """Sets the thresholds once per process (idempotent)."""
    global _done
    with _lock:
        if _done:
            return
        _done = True
        _mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        _mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


def share_arenas_across_a_fleet() -> None:
    """Caps glibc's arenas for a process about to upload into many canisters at once (before its threads
    start: arenas already made stay)."""
    _mallopt(_M_ARENA_MAX, FLEET_ARENAS)


def _mallopt(parameter: int, value: int) -> None:
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(parameter, value)
