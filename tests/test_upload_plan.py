"""Local reads for the upload: comparing a read-back chunk against the file."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from pipeline.upload.memory import keep_chunk_buffers
from pipeline.upload.plan import LocalFile, plan_chunks


def test_holds_compares_a_range_exactly(tmp_path) -> None:
    path = tmp_path / "f.bin"
    content = bytes(range(256)) * 40
    path.write_bytes(content)
    with LocalFile(path) as local:
        assert local.holds(100, content[100:1100])
        assert local.holds(100, content[100:1100])  # the reused buffer gives the same answer
        assert not local.holds(100, content[100:1099] + b"\xff")
        assert not local.holds(101, content[100:1100])
        assert not local.holds(len(content) - 10, content[-10:] + b"\x00")  # past the end: short read
        assert local.holds(len(content) - 10, content[-10:])


def test_holds_from_many_threads(tmp_path) -> None:
    path = tmp_path / "f.bin"
    content = bytes(range(251)) * 4000
    path.write_bytes(content)
    chunks = plan_chunks(len(content), 65_536)
    keep_chunk_buffers()
    keep_chunk_buffers()  # idempotent
    with LocalFile(path) as local, ThreadPoolExecutor(6) as pool:
        same = list(pool.map(lambda c: local.holds(c.offset, content[c.offset : c.end]), chunks))
        shifted = list(pool.map(lambda c: local.holds(c.offset, content[c.offset + 1 : c.end + 1]), chunks))
    assert all(same)
    assert not any(shifted)
