"""Checks that a file can work in a kind of canister, before a byte is sent: size and format limits."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import PrepError
from pipeline.targets.profile import RoleProfile, TargetProfile

_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # type -> bytes
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def check_file_fits(profile: TargetProfile, role: RoleProfile, path: Path, size: int) -> None:
    """Raises PrepError naming the limit and what to do when `path` cannot work in this kind."""
    if role.max_bytes is not None and size > role.max_bytes:
        raise PrepError(
            f"{path} is {size:,} bytes; a {profile.kind} canister can load at most {role.max_bytes:,} bytes "
            f"as its {role.name}",
            hint=role.limit_hint or "use a smaller file",
        )
    if role.format == "gguf" and role.architectures:
        arch = gguf_architecture(path)
        if arch not in role.architectures:
            raise PrepError(
                f"{path}: GGUF architecture {arch!r} is not one a {profile.kind} canister can load",
                hint=f"loadable architectures: {', '.join(role.architectures)}",
            )


def gguf_architecture(path: Path) -> str:
    """`general.architecture` from a GGUF header, reading only the metadata before it."""
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise PrepError(f"{path} is not a GGUF file (bad magic)", hint="build the recipe or pick a .gguf")
        version, _tensors, kv_count = struct.unpack("<IQQ", _exact(f, 20, path))
        if version < 2:
            raise PrepError(f"{path}: GGUF version {version} is too old", hint="convert it again")
        for _ in range(kv_count):
            key = _string(f, path)
            (value_type,) = struct.unpack("<I", _exact(f, 4, path))
            if key == "general.architecture" and value_type == _GGUF_STRING:
                return _string(f, path)
            _skip(f, value_type, path)
    raise PrepError(f"{path}: GGUF has no general.architecture", hint="convert it again")


def _exact(f: BinaryIO, n: int, path: Path) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise PrepError(f"{path}: GGUF header is truncated")
    return data


def _string(f: BinaryIO, path: Path) -> str:
    (length,) = struct.unpack("<Q", _exact(f, 8, path))
    return _exact(f, length, path).decode("utf-8", errors="replace")


def _skip(f: BinaryIO, value_type: int, path: Path) -> None:
    if value_type in _GGUF_SCALARS:
        f.seek(_GGUF_SCALARS[value_type], 1)
    elif value_type == _GGUF_STRING:
        (length,) = struct.unpack("<Q", _exact(f, 8, path))
        f.seek(length, 1)
    elif value_type == _GGUF_ARRAY:
        item_type, count = struct.unpack("<IQ", _exact(f, 12, path))
        if item_type in _GGUF_SCALARS:
            f.seek(_GGUF_SCALARS[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip(f, item_type, path)
    else:
        raise PrepError(f"{path}: GGUF metadata has unknown value type {value_type}")
