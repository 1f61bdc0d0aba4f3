"""One strategy per addressing mode (a profile's `addressing`): everything the engine, the status view and
the CLI need to know about how a kind's files are written, behind one protocol.

A third mode is one new class here (and its name in the registry), not a string tested across modules.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from pipeline.targets.profile import RoleProfile, TargetProfile
from pipeline.targets.remote_file import RemoteFile
from pipeline.targets.session import TargetSession
from pipeline.upload.append_upload import AppendMode
from pipeline.upload.journal import FileRecord, Journal
from pipeline.upload.offset_upload import OffsetMode
from pipeline.upload.plan import LocalFile
from pipeline.upload.reasons import Restart
from pipeline.upload.sender import Sender


class AddressingMode(Protocol):
    name: ClassVar[str]
    # With `prep upload --file`, whether `--remote` names the role (append) or the remote file (offset).
    remote_names_role: ClassVar[bool]

    @property
    def concurrent(self) -> bool:
        """Whether chunks go several at a time (the chunk size is then cut to fill blocks)."""

    def driver(self, session: TargetSession, role: RoleProfile, remote: str) -> RemoteFile:
        """The canister side of one role's file."""

    def view(self, driver: RemoteFile) -> Any:
        """What the canister reports about the file now (JSON-shaped), None when it reports nothing."""

    def contradiction(self, driver: RemoteFile, record: FileRecord, *, verify: bool) -> Restart | None:
        """Why a journal that says the bytes are in cannot be trusted (the canister says otherwise), or
        `--verify` asks for proof."""

    def reverifies(self, restart: Restart) -> bool:
        """Whether after `restart` the canister's copy is read back and only what differs is resent."""

    def send(
        self,
        sender: Sender,
        journal: Journal,
        driver: RemoteFile,
        local: LocalFile,
        *,
        resumed: bool,
        reverify: bool,
    ) -> None:
        """Sends what the canister lacks and proves the result; ends with the journal's bytes complete."""

    def status_row(self, driver: RemoteFile, record: FileRecord | None) -> dict[str, Any]:
        """`prep upload --status` fields: how far the journal got and what the canister holds."""


MODES: dict[str, type[OffsetMode] | type[AppendMode]] = {"offset": OffsetMode, "append": AppendMode}


def mode_for(profile: TargetProfile, *, window: int = 1, strict_order: bool = False) -> AddressingMode:
    return MODES[profile.addressing](window=window, strict_order=strict_order)
