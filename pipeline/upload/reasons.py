"""Why an upload does not simply continue where its journal stands: one name per reason.

A `Restart` pairs the reason with its particulars (sizes, the canister's words); events carry both the
reason's name (`cause`, for automation) and the sentence (`reason`, for people).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Why(Enum):
    NEW_UPLOAD = "new upload"
    RESTART_REQUESTED = "journal discarded (--restart)"
    VERIFY_REQUESTED = "read-back requested (--verify)"
    FILE_CHANGED = "different file or chunk size than the journal's"
    UPGRADED_DURING = "canister upgraded during the upload (module hash changed)"
    UPGRADED_SINCE = "canister code changed since the last run (module hash)"
    CANISTER_DISAGREES = "the canister does not hold what the journal says"
    SHA_DIFFERS = "canister's sha256 differs"
    STABLE_COPY_LOST = "its stable copy is not the file"
    CONSUMED = "a step uses up its heap copy"
    STEP_REFUSED = "a load step was refused, and the canister cannot show its bytes"

    @property
    def keeps_nothing(self) -> bool:
        """Nothing the journal says is used: the file starts from its first byte, no read-back."""
        return self in (Why.NEW_UPLOAD, Why.RESTART_REQUESTED, Why.FILE_CHANGED, Why.SHA_DIFFERS)


@dataclass(frozen=True)
class Restart:
    why: Why
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.why.value}: {self.detail}" if self.detail else self.why.value

    def fields(self) -> dict[str, str]:
        """For events: the reason's name and its sentence."""
        return {"cause": self.why.name.lower(), "reason": str(self)}
