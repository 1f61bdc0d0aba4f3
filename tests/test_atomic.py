"""Files are never half-written: the old file or the whole new one, and no leftovers on failure."""

from __future__ import annotations

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
