"""Repos as the emulated Hub stores them: commits of files, refs, gating and fault switches."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".onnx")


@dataclass(frozen=True)
class SparseContent:
    """A big model file as a sparse file holds it: real header bytes, then zeros up to `size`.

    Only its first bytes exist, so a test can list a 2 GB quantization and range-read its header without
    making 2 GB. Its LFS oid is declared (a sha256 over the head and the size), not the sha256 of the full
    content: hashing gigabytes of zeros would cost seconds, and a client that downloads the whole file
    (no test means to) sees a checksum mismatch instead of silently succeeding.
    """

    head: bytes
    size: int

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: slice) -> bytes:
        start, stop, _ = index.indices(self.size)
        stop = max(start, stop)
        head = self.head[start:stop]
        return head + bytes(stop - start - len(head))

    @property
    def declared_sha256(self) -> str:
        return hashlib.sha256(self.head + self.size.to_bytes(8, "little")).hexdigest()


@dataclass(frozen=True)
class HubFile:
    path: str
    data: bytes | SparseContent
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        if isinstance(self.data, SparseContent):
            return self.data.declared_sha256
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_id(self) -> str:
        """Git blob id; for an LFS file the Hub reports the id of its pointer file."""
        content = self.lfs_pointer() if self.lfs else bytes(self.data[:])
        return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()

    def lfs_pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {self.size}\n"
        ).encode()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id


@dataclass
class HubRepo:
    repo_id: str
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False
    corrupted: set[str] = field(default_factory=set)

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        if revision in self.commits:
            return revision
        return None


def card_data(readme: bytes) -> dict[str, Any]:
    """The model card metadata the Hub parses from README.md's YAML front matter."""
    text = readme.decode("utf-8", errors="replace")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    data = yaml.safe_load(text[4:end]) if end > 0 else None
    return data if isinstance(data, dict) else {}


def files_from_dir(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def make_files(contents: dict[str, bytes | SparseContent], lfs_threshold: int) -> dict[str, HubFile]:
    return {
        path: HubFile(path, data, lfs=len(data) >= lfs_threshold or path.endswith(LFS_SUFFIXES))
        for path, data in contents.items()
    }


def commit_id(repo_id: str, number: int, files: dict[str, HubFile]) -> str:
    digest = hashlib.sha1(f"{repo_id}\n{number}\n".encode())
    for path in sorted(files):
        digest.update(f"{path} {files[path].blob_id}\n".encode())
    return digest.hexdigest()
