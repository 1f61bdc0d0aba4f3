"""sha256 of a 1 GB file: pipeline.sha.sha256_file against coreutils `sha256sum`, in the same run.

Prints both rates and the ratio (ours / sha256sum wall time); the target is <= 1.2.
Each tool hashes the file twice after a warm-up read, so both see the page cache equally.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.sha import sha256_file  # noqa: E402

SIZE = 1_000_000_000
BLOCK = 16 * 1024 * 1024
ROUNDS = 2
TARGET_RATIO = 1.2


def write_file(path: Path) -> None:
    block = os.urandom(BLOCK)
    with open(path, "wb") as handle:
        written = 0
        while written < SIZE:
            chunk = block[: min(BLOCK, SIZE - written)]
            handle.write(chunk)
            written += len(chunk)


def best_time(run: Callable[[], str]) -> tuple[float, str]:
    results = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        digest = run()
        results.append((time.perf_counter() - start, digest))
    return min(results)


def sha256sum(path: Path) -> str:
    out = subprocess.run(["sha256sum", str(path)], check=True, capture_output=True, text=True).stdout
    return out.split()[0]


def main() -> int:
    if shutil.which("sha256sum") is None:
        print("sha256sum not found; cannot measure the baseline", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="prep-bench-hash-", dir="/tmp") as tmp:
        path = Path(tmp) / "one-gb.bin"
        write_file(path)
        sha256sum(path)  # warm the page cache
        base_time, base_digest = best_time(lambda: sha256sum(path))
        ours_time, ours_digest = best_time(lambda: sha256_file(path))
    if ours_digest != base_digest:
        print(f"digest mismatch: sha256_file {ours_digest} vs sha256sum {base_digest}", file=sys.stderr)
        return 1
    ratio = ours_time / base_time
    mb = SIZE / 1e6
    print(f"sha256sum:    {base_time:.2f} s  {mb / base_time:.0f} MB/s")
    print(f"sha256_file:  {ours_time:.2f} s  {mb / ours_time:.0f} MB/s")
    print(f"ratio sha256_file/sha256sum = {ratio:.2f} (target <= {TARGET_RATIO})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
