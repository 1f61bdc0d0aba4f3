"""Driver for offset-addressed targets (llama_cpp): every chunk says where it goes.

Writing a chunk at offset 0 truncates the file, so chunk 0 must land before any other; the other
chunks may land in any order and a repeat rewrites the same bytes. Completeness is proven by reading
the file back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.targets.calls import CanisterRefused, pick
from pipeline.targets.remote_file import RemoteFile


@dataclass
class OffsetFile(RemoteFile):
    def held(self) -> int | None:
        return self.remote_size()

    def idempotent(self, offset: int) -> bool:
        return offset != 0  # a repeat rewrites the same bytes; offset 0 truncates the file

    def remote_size(self) -> int | None:
        """The remote file's size, None when it does not exist."""
        assert self.role.size is not None
        spec = self.role.size
        try:
            answer = self.session.query(spec, whole=True, remote=self.remote)
        except CanisterRefused:
            # llama_cpp answers Err("File does not exist: ...") rather than exists = false; access
            # refusals cannot reach here, the upload preflight checked access first.
            return None
        exists = pick(answer, spec.exists) if spec.exists else True
        return int(pick(answer, spec.value) if spec.value else answer) if exists else None

    def read(self, offset: int, length: int) -> bytes:
        assert self.role.read is not None
        return bytes(self.session.query(self.role.read, remote=self.remote, offset=offset, length=length))

    def read_ranges(self, ranges: Sequence[tuple[int, int]], window: int) -> Iterator[bytes]:
        """The bytes of each (offset, length) range, in order, read by `window` concurrent queries (the
        read-back that proves a file: the upload's and `prep verify --canister`'s)."""
        with ThreadPoolExecutor(max_workers=window, thread_name_prefix="verify") as pool:
            yield from pool.map(lambda r: self.read(*r), ranges)

    def details(self) -> Any:
        """What the canister records about the file (llama_cpp: size and its own sha256), None if
        the kind has no such query or the canister has no record (e.g. lost in an upgrade)."""
        if self.role.running_sha is None:
            return None
        try:
            return self.session.query(self.role.running_sha, whole=True, remote=self.remote)
        except CanisterRefused:
            return None

    def running_sha(self) -> str | None:
        """The canister's own sha256 over the chunks in arrival order (right only for in-order uploads)."""
        if self.role.running_sha is None:
            return None
        return str(self.session.query(self.role.running_sha, remote=self.remote))
