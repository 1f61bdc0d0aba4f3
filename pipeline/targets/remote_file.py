"""What every protocol family's driver shares: one role's file in one canister, and its upload call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pipeline.targets.profile import CallSpec, RoleProfile
from pipeline.targets.session import TargetSession


@dataclass
class RemoteFile:
    session: TargetSession
    role: RoleProfile
    remote: str
    # Whether a chunk extends the file in arrival order (append) or says where it goes (offset).
    appends: ClassVar[bool] = False

    def held(self) -> int | None:
        """The bytes the canister reports holding for this file; None when it holds none or cannot tell."""
        raise NotImplementedError

    def idempotent(self, offset: int) -> bool:
        """Whether running the chunk at `offset` twice leaves the same state as running it once."""
        raise NotImplementedError

    @property
    def upload(self) -> CallSpec:
        return self.role.upload

    def upload_vars(self, offset: int, data: bytes) -> dict[str, Any]:
        """The template variables of one chunk's upload call (append kinds ignore the offset)."""
        return {"remote": self.remote, "chunk": data, "chunk_size": len(data), "offset": offset}
