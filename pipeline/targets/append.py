"""Driver for append-only targets (gpt2, icpp_llama2): chunks are appended in arrival order.

Nothing is idempotent: a chunk executed twice duplicates its bytes. The resume point is the length
query where the kind has one; otherwise the only safe restart is the reset call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pipeline.targets.remote_file import RemoteFile


@dataclass
class AppendFile(RemoteFile):
    appends: ClassVar[bool] = True

    def held(self) -> int | None:
        return self.remote_length()

    def idempotent(self, offset: int) -> bool:
        return False  # a repeat duplicates the bytes

    @property
    def can_resume(self) -> bool:
        return self.role.length is not None

    def remote_length(self) -> int | None:
        """Bytes the canister holds for this role, None when the kind cannot tell."""
        if self.role.length is None:
            return None
        return int(self.session.query(self.role.length, remote=self.remote))
