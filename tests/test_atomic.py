"""Files are never half-written: the old file or the whole new one, and no leftovers on failure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.atomic import atomic_path, atomic_writer, write_atomic


def test_success_replaces_the_destination_whole(tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "model.gguf"
    write_atomic(dest, b"old")
    with atomic_writer(dest) as handle:
        handle.write(b"new ")
        assert dest.read_bytes() == b"old"  # readers still see the old file while it is written
        handle.write(b"bytes")
    assert dest.read_bytes() == b"new bytes"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.gguf"]


@pytest.mark.parametrize("failure", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_keeps_the_old_file_and_leaves_nothing(tmp_path: Path, failure: BaseException) -> None:
    dest = tmp_path / "out.bin"
    write_atomic(dest, b"old")
    with pytest.raises(type(failure)), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise failure
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_files_get_the_umask_mode_like_any_tool_output(tmp_path: Path, umask: int) -> None:
    # Run in a child: the umask is process-wide and read once per process.
    probe = (
        "import os, sys; from pathlib import Path; from pipeline.atomic import write_atomic; "
        f"os.umask({umask}); write_atomic(Path(sys.argv[1]), b'x'); "
        "print(oct(os.stat(sys.argv[1]).st_mode & 0o777))"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "f")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == oct(0o666 & ~umask)
