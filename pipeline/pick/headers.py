"""Model headers read from the Hub by HTTP range requests: what a file is, without downloading it.

A GGUF header (metadata with the whole vocabulary, then the tensor infos) is a few MB for a 150k-token
vocabulary; the read starts with FIRST_READ bytes and asks only for more when the parser ends inside the
header. Every read is counted so that the report can say what learning a file cost.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PrepError
from pipeline.formats.gguf import GgufInfo, HeaderIncomplete, parse_gguf_header
from pipeline.formats.llama2c import HEADER as LLAMA2C_HEADER
from pipeline.formats.llama2c import header_problem
from pipeline.formats.safetensors import SafetensorsHeader, header_length, parse_safetensors_header
from pipeline.hub.hf import HubClient, RemoteFile

FIRST_READ = 2 * 1024 * 1024
# A safetensors header is JSON of ~100 bytes per tensor: tens of KB; the exact length comes first.
SAFETENSORS_FIRST_READ = 64 * 1024
# No model header is this large (a 262k-token vocabulary is ~8 MB): beyond it the file is not what it says.
MAX_HEADER_READ = 64 * 1024 * 1024


class UnreadableHeader(PrepError):
    """The file's bytes are not the header its name promises (the file's fault, not the network's)."""


@contextmanager
def _unreadable() -> Iterator[None]:
    """Parse errors become UnreadableHeader (no network happens inside: Hub errors never get here)."""
    try:
        yield
    except HeaderIncomplete:
        raise
    except PrepError as err:
        raise UnreadableHeader(err.message, hint=err.hint) from err


@dataclass
class RangeReader:
    """Reads the start of one repo file in growing range requests, counting what was fetched."""

    client: HubClient
    repo: str
    commit: str
    file: RemoteFile
    fetched: bytes = b""
    requests: int = 0

    @property
    def label(self) -> Path:
        return Path(self.repo) / self.file.path

    def prefix(self, length: int) -> bytes:
        """The first `length` bytes (fewer at the end of the file), fetching only what is missing."""
        length = min(length, self.file.size)
        if length > MAX_HEADER_READ:
            raise UnreadableHeader(
                f"{self.label}: its header claims more than {MAX_HEADER_READ:,} bytes; not a model header",
                hint="check that the file is what its name says",
            )
        if length > len(self.fetched):
            missing = length - len(self.fetched)
            got = self.client.read_range(self.repo, self.file.path, self.commit, len(self.fetched), missing)
            self.requests += 1
            if len(got) < missing:
                raise UnreadableHeader(
                    f"{self.label}: the Hub sent {len(got):,} of {missing:,} bytes asked for at byte "
                    f"{len(self.fetched):,} of a {self.file.size:,}-byte file",
                    hint="retry; if it persists the listing and the file disagree",
                )
            self.fetched += got
        return self.fetched[:length]


def read_gguf_header(reader: RangeReader) -> GgufInfo:
    """Parses the GGUF header, growing the read until the header is complete."""
    want = FIRST_READ
    while True:
        prefix = reader.prefix(want)
        try:
            with _unreadable():
                return parse_gguf_header(reader.label, prefix, reader.file.size)
        except HeaderIncomplete as err:
            if len(prefix) >= reader.file.size:
                raise UnreadableHeader(err.message, hint=err.hint) from err
            # Past the point the parser reached by another FIRST_READ: at most that much is read in vain.
            want = err.needed + FIRST_READ


def read_safetensors_header(reader: RangeReader) -> SafetensorsHeader:
    prefix = reader.prefix(SAFETENSORS_FIRST_READ)
    with _unreadable():
        length = header_length(reader.label, prefix, reader.file.size)
    raw = reader.prefix(8 + length)[8:]
    with _unreadable():
        return parse_safetensors_header(reader.label, raw, reader.file.size)


def read_llama2c_header(reader: RangeReader) -> tuple[int, ...] | None:
    """The 7 header ints of a llama2.c model.bin, or None when the bytes are not one."""
    raw = reader.prefix(LLAMA2C_HEADER.size)
    if len(raw) < LLAMA2C_HEADER.size:
        return None
    try:
        values = LLAMA2C_HEADER.unpack(raw)
    except struct.error:
        return None
    return None if header_problem(values) else values
